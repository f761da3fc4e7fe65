//! The shipped samples: every shipped sample dry-runs as the README
//! says, and every message it produces parses with mail-parser and with
//! Python's `email` package into exactly what the job and CSV asked for.

use std::collections::{BTreeMap, HashSet};

use mail_parser::MimeHeaders;

use super::{emls, header_names, header_section, mailshot_in, parse, repo_root};
use crate::support::{python, TestDir};

/// Reads a sample's recipients.csv as maps of column → value (independent of mailshot's reader).
fn sample_rows(sample: &str) -> Vec<BTreeMap<String, String>> {
    let path = repo_root()
        .join("samples")
        .join(sample)
        .join("recipients.csv");
    let mut reader = csv::Reader::from_path(&path).expect("open sample CSV");
    let headers = reader.headers().expect("header row").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("CSV record");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Runs the README's `mailshot run samples/S/job.yaml --dry-run --out DIR`
/// from the repository root and returns the messages by row.
fn dry_run_sample(sample: &str, out: &TestDir) -> BTreeMap<u64, Vec<u8>> {
    let job = format!("samples/{sample}/job.yaml");
    let out_dir = out.path().to_str().unwrap();
    mailshot_in(&repo_root(), &["run", &job, "--dry-run", "--out", out_dir]).expect_code(0);
    emls(out.path())
}

/// The wire rules every message must keep: CRLF line ends only, no line
/// over 998 octets (RFC 5322 2.1.1), ASCII headers, no Bcc header.
#[track_caller]
fn assert_wire_rules(raw: &[u8], what: &str) {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "{what}: bare LF at byte {i}");
        }
        if b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "{what}: bare CR at byte {i}");
        }
    }
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        assert!(
            line.len() <= 999,
            "{what}: line {} has {} octets",
            n + 1,
            line.len() - 1
        );
    }
    assert!(
        header_section(raw).is_ascii(),
        "{what}: non-ASCII in the headers"
    );
    assert!(
        !header_names(raw).iter().any(|h| h == "bcc"),
        "{what}: a Bcc header"
    );
}

/// Python's `email` package (policy.default decodes RFC 2047 words and
/// RFC 2231 parameters): for each file, a JSON object with the decoded
/// headers, the MIME tree, the decoded bodies and each attachment's name and
/// bytes (hex).
const PY_PARSE: &str = r#"
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    def tree(p):
        if p.is_multipart():
            return {p.get_content_type(): [tree(s) for s in p.iter_parts()]}
        return p.get_content_type()
    text = msg.get_body(('plain',))
    html = msg.get_body(('html',))
    atts = []
    for a in msg.iter_attachments():
        atts.append({'name': a.get_filename(), 'type': a.get_content_type(),
                     'hex': a.get_content().hex()})
    def addrs(name):
        h = msg.get(name)
        if h is None:
            return None
        return [[a.display_name, a.addr_spec] for a in h.addresses]
    out.append({
        'file': path,
        'defects': [str(d) for p in msg.walk() for d in p.defects],
        'subject': str(msg['subject']),
        'from': addrs('from'), 'to': addrs('to'), 'cc': addrs('cc'),
        'reply_to': addrs('reply-to'), 'bcc': addrs('bcc'),
        'message_id': str(msg['message-id']),
        'mime_version': str(msg['mime-version']),
        'date': str(msg['date']) if msg['date'] else None,
        'tree': tree(msg),
        'text': text.get_content() if text is not None else None,
        'html': html.get_content() if html is not None else None,
        'attachments': atts,
    })
print(json.dumps(out))
"#;

/// Parses the files with Python; returns one JSON object per file.
fn python_parse(files: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let (ok, stdout, stderr) = python(PY_PARSE, &args);
    assert!(ok, "python email parse failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("python JSON");
    v.as_array().expect("array").clone()
}

fn py_addrs(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap_or("").to_string(),
                        pair[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Both parsers agree on headers every message must carry, and the wire rules hold.
#[track_caller]
fn assert_common(raw: &[u8], py: &serde_json::Value, what: &str) {
    assert_wire_rules(raw, what);
    assert_eq!(
        py["defects"],
        serde_json::json!([]),
        "{what}: python defects"
    );
    assert_eq!(py["mime_version"], "1.0", "{what}");
    assert!(py["date"].is_string(), "{what}: no Date");
    assert!(py["bcc"].is_null(), "{what}: Bcc visible to python");
    let msg = parse(raw);
    assert!(msg.date().is_some(), "{what}: mail-parser finds no Date");
    let id = msg.message_id().expect("Message-ID");
    assert!(id.contains('@'), "{what}: Message-ID {id}");
    assert_eq!(py["message_id"], format!("<{id}>"), "{what}");
    assert!(msg.bcc().is_none(), "{what}: mail-parser finds a Bcc");
}

fn message_ids(msgs: &BTreeMap<u64, Vec<u8>>) -> Vec<String> {
    msgs.values()
        .map(|raw| parse(raw).message_id().expect("Message-ID").to_string())
        .collect()
}

#[test]
fn newsletter_sample_is_bilingual_multipart_alternative() {
    let out = TestDir::new();
    let msgs = dry_run_sample("newsletter", &out);
    let rows = sample_rows("newsletter");
    assert_eq!(msgs.len(), rows.len(), "one .eml per CSV row");
    let files: Vec<_> = (1..=rows.len())
        .map(|r| out.join(format!("{r}.eml")))
        .collect();
    let py = python_parse(&files);
    for (i, row) in rows.iter().enumerate() {
        let n = i as u64 + 1;
        let what = format!("newsletter row {n}");
        let raw = &msgs[&n];
        let py = &py[i];
        assert_common(raw, py, &what);
        let name = &row["name"];
        let email = &row["email"];
        let zh = row["lang"] == "zh";
        // The subject template of samples/newsletter/job.yaml, evaluated by hand.
        let subject = if zh {
            format!("茶讯 · 2026年11月｜{name}，本月新茶到了")
        } else {
            format!("Tea Letter, November 2026: {name}, this month's new teas")
        };
        let greeting = if zh {
            format!("{name}，您好！")
        } else {
            format!("Hello {name},")
        };

        let msg = parse(raw);
        assert_eq!(msg.subject(), Some(subject.as_str()), "{what}");
        let to = msg.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.name(), Some(name.as_str()), "{what}");
        assert_eq!(to.address(), Some(email.as_str()), "{what}");
        let from = msg.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.name(), Some("Acme Tea Club"), "{what}");
        assert_eq!(from.address(), Some("news@acme-tea.example"), "{what}");
        let reply_to = msg.reply_to().and_then(|a| a.first()).expect("Reply-To");
        assert_eq!(reply_to.address(), Some("support@acme-tea.example"));
        assert_eq!(
            msg.header_raw("X-Campaign").map(str::trim),
            Some("2026-11"),
            "{what}"
        );
        let text = msg.body_text(0).expect("text part");
        assert!(text.contains(&greeting), "{what}: text {text}");
        assert!(
            text.contains(&format!("{email} is on our list")),
            "{what}: footer from the shared layout"
        );
        let html = msg.body_html(0).expect("html part");
        assert!(html.contains(&format!("<p>{greeting}</p>")), "{what}: html");
        assert!(
            html.contains("<!DOCTYPE html>"),
            "{what}: extends templates/layout.html"
        );
        // The unsubscribe URL is urlencoded per recipient, with RFC 8058's one-click header.
        let lu = msg
            .header_raw("List-Unsubscribe")
            .expect("List-Unsubscribe");
        let encoded_email = email.replace('@', "%40");
        assert!(lu.contains(&format!("e={encoded_email}")), "{what}: {lu}");
        assert_eq!(
            msg.header_raw("List-Unsubscribe-Post").map(str::trim),
            Some("List-Unsubscribe=One-Click")
        );

        // Python sees the same thing.
        assert_eq!(py["subject"], subject.as_str(), "{what}: python subject");
        assert_eq!(
            py_addrs(&py["to"]),
            vec![(name.clone(), email.clone())],
            "{what}"
        );
        assert_eq!(
            py["tree"],
            serde_json::json!({"multipart/alternative": ["text/plain", "text/html"]}),
            "{what}"
        );
        assert!(py["text"].as_str().unwrap().contains(&greeting), "{what}");
        assert!(py["html"]
            .as_str()
            .unwrap()
            .contains(&format!("<p>{greeting}</p>")));
        assert_eq!(py["attachments"], serde_json::json!([]), "{what}");
    }
    let ids = message_ids(&msgs);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "Message-IDs are unique: {ids:?}");
}

#[test]
fn merge_sample_attaches_each_customers_report_with_its_chinese_name() {
    let out = TestDir::new();
    let msgs = dry_run_sample("merge", &out);
    let rows = sample_rows("merge");
    assert_eq!(msgs.len(), rows.len());
    let files: Vec<_> = (1..=rows.len())
        .map(|r| out.join(format!("{r}.eml")))
        .collect();
    let py = python_parse(&files);
    let reports = repo_root().join("samples/merge/reports");
    for (i, row) in rows.iter().enumerate() {
        let n = i as u64 + 1;
        let what = format!("merge row {n}");
        let raw = &msgs[&n];
        let py = &py[i];
        assert_common(raw, py, &what);
        let id = &row["id"];
        let pdf = std::fs::read(reports.join(format!("{id}.pdf"))).expect("sample report");
        let name = if row["report_name"].is_empty() {
            format!("statement-{id}.pdf")
        } else {
            row["report_name"].clone()
        };
        let subject = format!("Your October 2026 statement – {}", row["company"]);

        let msg = parse(raw);
        assert_eq!(msg.subject(), Some(subject.as_str()), "{what}");
        let to = msg.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.name(), Some(row["contact"].as_str()), "{what}");
        assert_eq!(to.address(), Some(row["email"].as_str()), "{what}");
        // A blank account_manager means no Cc at all, not an empty one.
        let cc: Vec<String> = msg
            .cc()
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.address().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let manager = &row["account_manager"];
        if manager.is_empty() {
            assert!(cc.is_empty(), "{what}: cc {cc:?}");
            assert!(!header_names(raw).iter().any(|h| h == "cc"), "{what}");
        } else {
            let addr = manager
                .split('<')
                .nth(1)
                .and_then(|s| s.strip_suffix('>'))
                .unwrap();
            assert_eq!(cc, vec![addr.to_string()], "{what}");
        }
        let text = msg.body_text(0).expect("text");
        assert!(
            text.contains(&format!("Dear {},", row["contact"])),
            "{what}"
        );
        assert!(text.contains(&format!("EUR {}", row["amount"])), "{what}");
        assert_eq!(msg.attachment_count(), 1, "{what}");
        let att = msg.attachment(0).unwrap();
        assert_eq!(att.attachment_name(), Some(name.as_str()), "{what}");
        assert_eq!(att.contents(), &pdf[..], "{what}: attachment bytes");
        let ct = att.content_type().expect("attachment content type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("application", Some("pdf")),
            "{what}"
        );

        assert_eq!(py["subject"], subject.as_str(), "{what}: python");
        assert_eq!(
            py["tree"],
            serde_json::json!({"multipart/mixed": ["text/plain", "application/pdf"]}),
            "{what}"
        );
        let atts = py["attachments"].as_array().unwrap();
        assert_eq!(atts.len(), 1, "{what}");
        assert_eq!(atts[0]["name"], name.as_str(), "{what}: python filename");
        let hex: String = pdf.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            atts[0]["hex"],
            hex.as_str(),
            "{what}: python attachment bytes"
        );
        assert!(py["text"]
            .as_str()
            .unwrap()
            .contains(&format!("Dear {},", row["contact"])));
    }
    let ids = message_ids(&msgs);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}

#[test]
fn notify_sample_is_plain_text_with_upper_cased_status() {
    let out = TestDir::new();
    let msgs = dry_run_sample("notify", &out);
    let rows = sample_rows("notify");
    assert_eq!(msgs.len(), rows.len());
    let files: Vec<_> = (1..=rows.len())
        .map(|r| out.join(format!("{r}.eml")))
        .collect();
    let py = python_parse(&files);
    for (i, row) in rows.iter().enumerate() {
        let n = i as u64 + 1;
        let what = format!("notify row {n}");
        let raw = &msgs[&n];
        assert_common(raw, &py[i], &what);
        let subject = format!(
            "[mailshot] {}: {} #{}",
            row["status"].to_uppercase(),
            row["pipeline"],
            row["build"]
        );
        let msg = parse(raw);
        assert_eq!(msg.subject(), Some(subject.as_str()), "{what}");
        // No `to:` in the job: the email column is the recipient.
        let to = msg.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.address(), Some(row["email"].as_str()), "{what}");
        assert_eq!(py[i]["tree"], "text/plain", "{what}");
        let text = py[i]["text"].as_str().unwrap();
        assert!(
            text.contains(&format!(
                "https://ci.example.org/mailshot/builds/{}",
                row["build"]
            )),
            "{what}: {text}"
        );
        assert_eq!(msg.attachment_count(), 0);
    }
}

#[test]
fn message_ids_are_unique_across_runs_and_samples() {
    // A rerun of the same job must not reuse Message-IDs of an earlier dry run,
    // or threads and dedupe in clients would merge different sends.
    let mut seen = HashSet::new();
    for sample in ["newsletter", "merge", "notify", "notify"] {
        let out = TestDir::new();
        for id in message_ids(&dry_run_sample(sample, &out)) {
            assert!(seen.insert(id.clone()), "Message-ID {id} repeated");
        }
    }
}

#[test]
fn check_and_preview_accept_every_sample() {
    for (sample, rows) in [("newsletter", 7usize), ("merge", 4), ("notify", 3)] {
        let job = format!("samples/{sample}/job.yaml");
        let check = mailshot_in(&repo_root(), &["check", &job]);
        check.expect_code(0);
        assert!(
            check.stderr.contains(&format!("{rows} messages")),
            "{sample}: {}",
            check.stderr
        );
        let last = rows.to_string();
        let preview = mailshot_in(&repo_root(), &["preview", &job, "--row", &last]);
        preview.expect_code(0);
        let csv_rows = sample_rows(sample);
        let msg = parse(&preview.raw_stdout);
        assert_eq!(
            msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some(csv_rows[rows - 1]["email"].as_str()),
            "{sample}: preview --row {rows} shows row {rows}"
        );
        assert_wire_rules(&preview.raw_stdout, sample);
    }
}

#[test]
fn long_values_are_folded_or_encoded_to_998_octets_and_decode_back() {
    // 3,000 characters without a space, in the subject, a custom header, the
    // text and the HTML part: nothing may reach the wire as one long line.
    let long: String = "数据ab".repeat(750);
    let jd = super::JobDir::new();
    jd.dir.write("body.txt", "Start {{ blob }} end\n");
    jd.dir.write("body.html", "<p>{{ blob }}</p>\n");
    jd.csv(format!("email,blob\nann@example.com,{long}\n"));
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: \"S {{ blob }}\"\ntext: body.txt\nhtml: body.html\nheaders:\n  X-Blob: \"{{ blob }}\"\nrecipients:\n  file: r.csv\n",
    );
    let msgs = jd.dry_run();
    let raw = &msgs[&1];
    assert_wire_rules(raw, "long values");
    let msg = parse(raw);
    assert_eq!(msg.subject(), Some(format!("S {long}").as_str()));
    assert_eq!(
        msg.body_text(0).unwrap().trim_end(),
        format!("Start {long} end")
    );
    assert!(msg
        .body_html(0)
        .unwrap()
        .contains(&format!("<p>{long}</p>")));
    let py = python_parse(&[jd.dir.join("out").join("1.eml")]);
    assert_eq!(py[0]["subject"], format!("S {long}").as_str());
    assert_eq!(py[0]["defects"], serde_json::json!([]));
}
