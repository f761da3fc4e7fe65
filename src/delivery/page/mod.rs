//! `JOB.report.html`: a run as one self-contained page. It loads nothing
//! (a Content-Security-Policy forbids it: no script, no outside style, font
//! or image); the charts are inline SVG ([`chart`]) and every chart has its
//! numbers in a table beside it. The numbers come from one streaming pass
//! over the report CSV(s) and journal(s) ([`tally`]), so a million-row run
//! builds its page in bounded memory.

pub mod chart;
pub mod tally;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use html_escape::encode_text as esc;

pub use tally::Tally;

/// Domains shown one by one; the rest are "other".
pub const TOP_DOMAINS: usize = 20;
/// Points at most on the rate chart.
const RATE_POINTS: u64 = 120;

/// Where a run's numbers are.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Report CSVs (one per shard, or just one).
    pub reports: Vec<PathBuf>,
    /// Journals, for the rate over the run (missing ones are skipped).
    pub journals: Vec<PathBuf>,
    /// `JOB.bounces.csv`, shown when it exists.
    pub bounces: Option<PathBuf>,
}

/// Read every source into one tally.
pub fn gather(sources: &Sources) -> io::Result<Tally> {
    let mut t = Tally::new();
    for r in &sources.reports {
        t.add_report(r)?;
    }
    for j in &sources.journals {
        t.add_journal(j)?;
    }
    if let Some(b) = &sources.bounces {
        t.add_bounces(b)?;
    }
    Ok(t)
}

/// Build the page for `sources` and write it to `out` atomically (mode 0600).
pub fn write(title: &str, sources: &Sources, out: &Path) -> io::Result<Tally> {
    let tally = gather(sources)?;
    let html = render(title, &tally)?;
    crate::outputs::write_atomically(out, html.as_bytes())?;
    Ok(tally)
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#212121;background:#fafafa}\
main{max-width:1140px;margin:0 auto;padding:1rem 1.25rem 3rem}\
h1{font-size:1.5rem;margin:.5rem 0;overflow-wrap:anywhere}\
h2{font-size:1.15rem;margin:1.75rem 0 .5rem}\
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:0 1rem 1rem;margin-top:1rem}\
.pair{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}\
.pair>figure{flex:0 1 480px;margin:0;min-width:0}\
.pair>figure svg{display:block;max-width:100%;height:auto}\
.pair>.numbers{flex:1 1 340px;min-width:0;overflow-wrap:anywhere}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #eee;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
#domains-table th[scope=row]{width:30%}thead th{overflow-wrap:normal}\
.key{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}\
dt{font-weight:600}dd{margin:0}";

/// The whole page as HTML.
pub fn render(title: &str, t: &Tally) -> io::Result<String> {
    let mut h = String::with_capacity(64 * 1024);
    let title = esc(title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>mailshot report: {title}</title><style>{STYLE}</style></head>\
         <body><main><h1>mailshot report: {title}</h1>"
    );
    overview(&mut h, t);
    totals(&mut h, t)?;
    domains(&mut h, t)?;
    codes(&mut h, t)?;
    rate(&mut h, t)?;
    attempts(&mut h, t)?;
    bounces(&mut h, t)?;
    h.push_str("</main></body></html>\n");
    Ok(h)
}

fn key(i: usize) -> String {
    format!(
        "<span class=\"key\" style=\"background:{}\"></span>",
        chart::css(chart::colour(i))
    )
}

fn section_start(h: &mut String, id: &str, heading: &str, svg: &str) {
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{heading}</h2><div class=\"pair\">\
         <figure aria-hidden=\"true\">{svg}</figure><div class=\"numbers\">"
    );
}

fn section_end(h: &mut String) {
    h.push_str("</div></div></section>");
}

fn overview(h: &mut String, t: &Tally) {
    let sent = t.totals.first().copied().unwrap_or(0);
    h.push_str("<section id=\"overview\"><h2>Run</h2><dl>");
    let _ = write!(
        h,
        "<dt>Recipients</dt><dd id=\"recipients\">{}</dd>",
        t.rows
    );
    match t.span_ms {
        Some((lo, hi)) => {
            let secs = (hi - lo) as f64 / 1000.0;
            let _ = write!(
                h,
                "<dt>Duration</dt><dd id=\"duration\">{}</dd>",
                duration_text(secs)
            );
            // Below a second the average says nothing.
            if secs >= 1.0 {
                let rate = sent as f64 / secs;
                let _ = write!(h, "<dt>Average rate</dt><dd>{rate:.1} messages/s</dd>");
            }
        }
        None => h.push_str("<dt>Duration</dt><dd id=\"duration\">not recorded</dd>"),
    }
    sessions(h, t);
}

/// The sessions the run used: beside the duration, and, for shards (which
/// send at the same time), their sum with a table per shard.
fn sessions(h: &mut String, t: &Tally) {
    if t.sessions.is_empty() {
        h.push_str("<dt>Sessions</dt><dd id=\"sessions\">not recorded</dd></dl></section>");
        return;
    }
    let sum: u64 = t.sessions.iter().map(|(_, n)| n).sum();
    let _ = write!(h, "<dt>Sessions</dt><dd id=\"sessions\">{sum}</dd></dl>");
    if t.sessions.len() > 1 {
        h.push_str(
            "<table id=\"sessions-table\"><thead><tr><th scope=\"col\">Journal</th>\
             <th scope=\"col\" class=\"n\">Sessions</th></tr></thead><tbody>",
        );
        for (journal, n) in &t.sessions {
            let _ = write!(
                h,
                "<tr><th scope=\"row\">{}</th><td class=\"n\">{n}</td></tr>",
                esc(journal)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

fn duration_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round() as u64;
        format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
    }
}

fn totals(h: &mut String, t: &Tally) -> io::Result<()> {
    section_start(h, "totals", "Totals per status", &chart::bars(&t.totals)?);
    h.push_str(
        "<table id=\"totals-table\"><thead><tr><th scope=\"col\">Status</th>\
         <th scope=\"col\" class=\"n\">Recipients</th></tr></thead><tbody>",
    );
    for (i, (status, n)) in t.statuses.iter().zip(&t.totals).enumerate() {
        let _ = write!(
            h,
            "<tr data-status=\"{s}\"><th scope=\"row\">{k}{s}</th><td class=\"n\">{n}</td></tr>",
            s = esc(status),
            k = key(i)
        );
    }
    let _ = write!(
        h,
        "<tr data-status=\"total\"><th scope=\"row\">total</th><td class=\"n\">{}</td></tr>\
         </tbody></table>",
        t.rows
    );
    section_end(h);
    Ok(())
}

fn domains(h: &mut String, t: &Tally) -> io::Result<()> {
    let top = t.top_domains(TOP_DOMAINS);
    let rows: Vec<Vec<u64>> = top.iter().map(|(_, c)| c.clone()).collect();
    section_start(
        h,
        "domains",
        "Outcomes per recipient domain",
        &chart::stacked_bars(&rows)?,
    );
    h.push_str("<table id=\"domains-table\"><thead><tr><th scope=\"col\">Domain</th>");
    for (i, s) in t.statuses.iter().enumerate() {
        let _ = write!(h, "<th scope=\"col\" class=\"n\">{}{}</th>", key(i), esc(s));
    }
    h.push_str("</tr></thead><tbody>");
    for (domain, counts) in &top {
        let _ = write!(h, "<tr><th scope=\"row\">{}</th>", esc(domain));
        for n in counts {
            let _ = write!(h, "<td class=\"n\">{n}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    section_end(h);
    Ok(())
}

fn codes(h: &mut String, t: &Tally) -> io::Result<()> {
    let counts: Vec<u64> = t.codes.values().map(|(n, _)| *n).collect();
    section_start(h, "codes", "Reply codes", &chart::plain_bars(&counts)?);
    h.push_str(
        "<table id=\"codes-table\"><thead><tr><th scope=\"col\">Code</th>\
         <th scope=\"col\" class=\"n\">Recipients</th><th scope=\"col\">Sample reply</th>\
         </tr></thead><tbody>",
    );
    for (code, (n, sample)) in &t.codes {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{n}</td><td>{}</td></tr>",
            esc(code),
            esc(sample)
        );
    }
    if t.codes_overflow > 0 {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">other</th><td class=\"n\">{}</td><td></td></tr>",
            t.codes_overflow
        );
    }
    h.push_str("</tbody></table>");
    section_end(h);
    Ok(())
}

/// Messages sent per second over the run, in at most [`RATE_POINTS`]
/// buckets: (bucket start in seconds from the first outcome, messages/s).
pub fn rate_buckets(t: &Tally) -> Vec<(u64, f64)> {
    let (Some((lo, hi)), true) = (t.span_ms, !t.per_second.is_empty()) else {
        return Vec::new();
    };
    let (first, last) = (lo / 1000, hi / 1000);
    let seconds = last - first + 1;
    let width = seconds.div_ceil(RATE_POINTS);
    let mut buckets = vec![0u64; seconds.div_ceil(width) as usize];
    for (&sec, &n) in &t.per_second {
        buckets[((sec - first) / width) as usize] += n;
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, n)| (i as u64 * width, n as f64 / width as f64))
        .collect()
}

fn rate(h: &mut String, t: &Tally) -> io::Result<()> {
    let buckets = rate_buckets(t);
    let points: Vec<u64> = buckets.iter().map(|&(_, r)| (r * 10.0) as u64).collect();
    section_start(
        h,
        "rate",
        "Messages sent per second",
        &chart::line(&points)?,
    );
    h.push_str(
        "<table id=\"rate-table\"><thead><tr><th scope=\"col\" class=\"n\">From second</th>\
         <th scope=\"col\" class=\"n\">Messages/s</th></tr></thead><tbody>",
    );
    for (start, r) in &buckets {
        let _ = write!(
            h,
            "<tr><td class=\"n\">{start}</td><td class=\"n\">{r:.1}</td></tr>"
        );
    }
    h.push_str("</tbody></table>");
    section_end(h);
    Ok(())
}

fn attempts(h: &mut String, t: &Tally) -> io::Result<()> {
    let counts: Vec<u64> = t.attempts.values().copied().collect();
    section_start(h, "attempts", "Attempts", &chart::plain_bars(&counts)?);
    h.push_str(
        "<table id=\"attempts-table\"><thead><tr><th scope=\"col\" class=\"n\">Attempts</th>\
         <th scope=\"col\" class=\"n\">Recipients</th></tr></thead><tbody>",
    );
    for (a, n) in &t.attempts {
        let _ = write!(
            h,
            "<tr><td class=\"n\">{a}</td><td class=\"n\">{n}</td></tr>"
        );
    }
    h.push_str("</tbody></table>");
    section_end(h);
    Ok(())
}

fn bounces(h: &mut String, t: &Tally) -> io::Result<()> {
    let Some(kinds) = &t.bounces else {
        return Ok(());
    };
    let counts: Vec<u64> = kinds.values().copied().collect();
    section_start(
        h,
        "bounces",
        "Bounces per kind",
        &chart::plain_bars(&counts)?,
    );
    h.push_str(
        "<table id=\"bounces-table\"><thead><tr><th scope=\"col\">Kind</th>\
         <th scope=\"col\" class=\"n\">Messages</th></tr></thead><tbody>",
    );
    for (kind, n) in kinds {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{n}</td></tr>",
            esc(kind)
        );
    }
    h.push_str("</tbody></table>");
    section_end(h);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_nothing_and_escapes_what_servers_sent() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        std::fs::write(
            &report,
            "row,email,status,code,enhanced,reply,message_id,attempts\n\
             1,a@x.test,rejected,550,5.1.1,<script>alert(1)</script>,,1\n",
        )
        .unwrap();
        let sources = Sources {
            reports: vec![report],
            ..Sources::default()
        };
        let html = render("news <1>", &gather(&sources).unwrap()).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("mailshot report: news &lt;1&gt;"));
        for outside in ["src=", "href=", "url(", "@import"] {
            assert!(!html.contains(outside), "{outside} in the page");
        }
        assert!(html.contains("default-src 'none'"));
    }

    #[test]
    fn rate_buckets_average_over_wide_buckets() {
        let mut t = Tally::new();
        t.span_ms = Some((0, 239_999));
        t.per_second.insert(0, 4);
        t.per_second.insert(1, 2);
        t.per_second.insert(239, 10);
        let b = rate_buckets(&t);
        assert_eq!(b.len(), 120);
        assert_eq!(b[0], (0, 3.0));
        assert_eq!(b[119], (238, 5.0));
    }
}
