//! The benchmark's input: a recipients CSV, a personalised text + HTML
//! message of about 2 KB, and the same message expressed for each contender
//! (a mailshot job, a Python `mailmerge` template, and plain strings the
//! lettre sender fills in itself).

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The sender every contender uses.
pub const FROM: &str = "Bench Sender <sender@bench.example>";
/// The subject template (minijinja and Jinja2 agree on this syntax).
pub const SUBJECT: &str = "Your {{ plan }} statement for November, {{ name }}";

/// The plain-text part (about 0.8 KB once filled in).
pub const TEXT: &str = "Hello {{ name }},

thank you for being with us since {{ since }}. This is your monthly statement
for account {{ id }} on the {{ plan }} plan; the full details are online at
https://bench.example/account/{{ id }}/statements/2026-11 and a summary follows.

  Account:        {{ id }}
  Plan:           {{ plan }}
  City:           {{ city }}
  Balance:        {{ balance }} EUR
  Next invoice:   1 December 2026

Your usage this month stayed within the limits of your plan, so there is
nothing you need to do. If you want to change your plan, reply to this
message or write to support@bench.example; we answer within one working day.

We are also updating our terms of service on 1 January 2027. The changes are
small: clearer wording about data retention, and a new section about the
mobile application. You can read them at https://bench.example/terms/2027.

Kind regards,
The Bench team
";

/// The HTML part (about 1.1 KB once filled in).
pub const HTML: &str = "<!doctype html>
<html><body style=\"font-family: sans-serif; color: #222\">
<p>Hello {{ name }},</p>
<p>thank you for being with us since {{ since }}. This is your monthly statement
for account <b>{{ id }}</b> on the <b>{{ plan }}</b> plan; the full details are
<a href=\"https://bench.example/account/{{ id }}/statements/2026-11\">online</a>.</p>
<table cellpadding=\"4\">
<tr><td>Account</td><td>{{ id }}</td></tr>
<tr><td>Plan</td><td>{{ plan }}</td></tr>
<tr><td>City</td><td>{{ city }}</td></tr>
<tr><td>Balance</td><td>{{ balance }} EUR</td></tr>
<tr><td>Next invoice</td><td>1 December 2026</td></tr>
</table>
<p>Your usage this month stayed within the limits of your plan, so there is
nothing you need to do. If you want to change your plan, reply to this message
or write to <a href=\"mailto:support@bench.example\">support@bench.example</a>.</p>
<p>We are updating our terms of service on 1 January 2027; read them at
<a href=\"https://bench.example/terms/2027\">bench.example/terms/2027</a>.</p>
<p>Kind regards,<br>The Bench team</p>
</body></html>
";

const FIRST: &[&str] = &[
    "Ada", "Grace", "Linus", "Ken", "Barbara", "Dennis", "Margaret", "Edsger", "Frances", "Niklaus",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Torvalds", "Thompson", "Liskov", "Ritchie", "Hamilton", "Dijkstra",
    "Allen", "Wirth",
];
const CITIES: &[&str] = &[
    "Berlin", "Lyon", "Porto", "Utrecht", "Gent", "Turku", "Brno",
];
const PLANS: &[&str] = &["Basic", "Plus", "Family", "Business"];

/// The CSV header; every field is free of commas and quotes, so the lettre
/// sender can split lines without a CSV parser.
pub const COLUMNS: &[&str] = &["email", "name", "id", "plan", "city", "since", "balance"];

/// One recipient row, deterministic in `i` (0-based).
pub fn row(i: usize) -> Vec<String> {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / FIRST.len()) % LAST.len()];
    vec![
        format!("user{i}@example.com"),
        format!("{first} {last}"),
        format!("AC-{:07}", 1_000_003 * (i as u64 + 1) % 10_000_000),
        PLANS[i % PLANS.len()].to_string(),
        CITIES[i % CITIES.len()].to_string(),
        format!("{}", 2005 + i % 20),
        format!("{}.{:02}", (i * 37) % 5000, i % 100),
    ]
}

/// Writes `rows` recipients to `path` (skipped when it already has them).
pub fn write_csv(path: &Path, rows: usize) -> io::Result<()> {
    let stamp = path.with_extension("rows");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(&rows.to_string()) && path.exists() {
        return Ok(());
    }
    let mut w = BufWriter::new(fs::File::create(path)?);
    writeln!(w, "{}", COLUMNS.join(","))?;
    for i in 0..rows {
        writeln!(w, "{}", row(i).join(","))?;
    }
    w.flush()?;
    fs::write(stamp, rows.to_string())?;
    Ok(())
}

/// Writes the templates and a mailshot job reading `csv` (relative to `dir`)
/// to `dir/NAME.yaml`, returning the job path.
pub fn write_job(dir: &Path, name: &str, csv: &str) -> io::Result<PathBuf> {
    write_job_with(dir, name, csv, TEXT, HTML, SUBJECT)
}

/// The same message with template-engine work in every template: a filter in
/// the subject and the greeting, a conditional in both bodies. (The plain
/// message has only `{{ column }}` lookups, which mailshot substitutes
/// without the engine.)
pub fn write_engine_job(dir: &Path, name: &str, csv: &str) -> io::Result<PathBuf> {
    let greeting = "Hello {{ name|title }},{% if balance != \"0.00\" %} (balance due){% endif %}";
    write_job_with(
        dir,
        name,
        csv,
        &TEXT.replacen("Hello {{ name }},", greeting, 1),
        &HTML.replacen("Hello {{ name }},", greeting, 1),
        &SUBJECT.replacen("{{ plan }}", "{{ plan|lower }}", 1),
    )
}

/// The plain message with one attachment whose path is `attachment` (a
/// template: the same file for everyone, or one per row).
pub fn write_attachment_job(
    dir: &Path,
    name: &str,
    csv: &str,
    attachment: &str,
) -> io::Result<PathBuf> {
    let job = write_job_with(dir, name, csv, TEXT, HTML, SUBJECT)?;
    let mut text = fs::read_to_string(&job)?;
    text.push_str(&format!("attachments:\n  - path: \"{attachment}\"\n"));
    fs::write(&job, text)?;
    Ok(job)
}

/// Writes `bytes` bytes of incompressible stand-in PDF to `path`, different
/// for each `seed` (skipped when the file already has that size).
pub fn write_pdf(path: &Path, bytes: usize, seed: u64) -> io::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == bytes as u64) {
        return Ok(());
    }
    let mut data = Vec::with_capacity(bytes);
    data.extend_from_slice(b"%PDF-1.4\n");
    // xorshift64*: cheap bytes that base64 cannot shortcut.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while data.len() < bytes {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(bytes);
    fs::write(path, data)
}

fn write_job_with(
    dir: &Path,
    name: &str,
    csv: &str,
    text: &str,
    html: &str,
    subject: &str,
) -> io::Result<PathBuf> {
    fs::write(dir.join(format!("{name}.txt")), text)?;
    fs::write(dir.join(format!("{name}.html")), html)?;
    let job = dir.join(format!("{name}.yaml"));
    fs::write(
        &job,
        format!(
            "from: \"{FROM}\"
to: \"{{{{ name }}}} <{{{{ email }}}}>\"
subject: \"{subject}\"
text: {name}.txt
html: {name}.html
recipients:
  file: {csv}
"
        ),
    )?;
    Ok(job)
}

/// Writes the Python mailmerge template, database link and server config to
/// `dir`, sending to `port` in the clear. Returns (template, config).
pub fn write_mailmerge(dir: &Path, port: u16) -> io::Result<(PathBuf, PathBuf)> {
    let template = dir.join("mailmerge_template.txt");
    fs::write(
        &template,
        format!(
            "TO: {{{{ name }}}} <{{{{ email }}}}>
SUBJECT: {SUBJECT}
FROM: {FROM}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"bench-boundary\"

--bench-boundary
Content-Type: text/plain; charset=us-ascii

{TEXT}
--bench-boundary
Content-Type: text/html; charset=us-ascii

{HTML}
--bench-boundary--
"
        ),
    )?;
    let config = dir.join(format!("mailmerge_server_{port}.conf"));
    fs::write(
        &config,
        format!("[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\n"),
    )?;
    Ok((template, config))
}

/// Fills `{{ column }}` placeholders from one CSV line (the lettre sender's
/// stand-in for a template engine; the output equals the other contenders').
pub fn fill(template: &str, fields: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{ ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find(" }}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &after[..end];
        match COLUMNS.iter().position(|c| *c == key) {
            Some(i) => out.push_str(fields.get(i).copied().unwrap_or("")),
            None => out.push_str(&rest[start..start + 3 + end + 3]),
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    out
}
