//! `JOB.report.html`, as a real headless Chromium renders it: the totals
//! match the CSV report, every section has its table, and at 1200 px no
//! element overflows the page, long server replies included.

use std::collections::BTreeMap;

use super::helpers::*;
use crate::support::chromium;
use crate::support::fault::FaultServer;

/// A reply long enough, without a space, to push a careless page sideways.
fn long_token() -> String {
    "x".repeat(400)
}

fn job_with_every_status() -> (Job, crate::support::fault::FaultHandle) {
    let long = long_token();
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| match to {
            "r2@example.test" => Some("451 4.3.0 try again later".to_owned()),
            "r4@example.test" => Some(format!("550 5.1.1 no such user {long}")),
            _ => None,
        })
        .start();
    let domain = format!("{}.example.test", "d".repeat(60));
    let csv = format!(
        "email,name\n\
         r1@example.test,One\n\
         r2@example.test,Two\n\
         r3@other.test,Three\n\
         r4@example.test,Four\n\
         r1@example.test,Again\n\
         r6@{domain},Six\n"
    );
    let job = Job::with_csv(&smtp_plain(server.port(), "sessions: 1"), &csv, "");
    (job, server)
}

/// `<tr data-status="S"><th ...>...</th><td class="n">N</td>` → S → N.
fn rendered_totals(dom: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for piece in dom.split("<tr data-status=\"").skip(1) {
        let status = piece.split('"').next().unwrap().to_owned();
        let cell = piece
            .split("<td class=\"n\">")
            .nth(1)
            .and_then(|c| c.split('<').next())
            .unwrap_or_else(|| panic!("no count for {status} in {piece}"));
        out.insert(status, cell.trim().parse().unwrap());
    }
    out
}

#[test]
fn the_page_chromium_renders_holds_the_report_totals_and_a_table_per_chart() {
    let (job, _server) = job_with_every_status();
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let rows = job.report();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *want.entry(r.status.clone()).or_default() += 1;
    }
    want.insert("total".into(), rows.len() as u64);

    let dom = chromium::dump_dom(&job.dir.join("job.report.html"), 1200, &[]);
    let mut got = rendered_totals(&dom);
    got.retain(|_, n| *n > 0);
    assert_eq!(got, want, "{dom}");
    for id in ["totals", "domains", "codes", "rate", "attempts"] {
        let section = dom
            .split(&format!("<section id=\"{id}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {id} section"));
        let section = section.split("</section>").next().unwrap();
        assert!(section.contains("<svg"), "{id} has no chart");
        assert!(section.contains("<table"), "{id} has no table");
    }
    assert!(dom.contains("other.test"), "domains table");
    assert!(dom.contains("550 5.1.1"), "codes table");
    // The rate comes from the journal's timestamps: something was sent.
    let rate = dom.split("id=\"rate-table\"").nth(1).unwrap();
    assert!(rate.contains("<td class=\"n\">0</td>"), "{rate}");
    // Nothing is loaded from elsewhere.
    let page = job.dir.read("job.report.html");
    for outside in [
        "<script", "<link", "<img", "src=", "href=", "url(", "@import",
    ] {
        assert!(!page.contains(outside), "{outside} in the page");
    }
}

#[test]
fn at_1200_px_no_element_overflows_the_page() {
    let (job, _server) = job_with_every_status();
    assert_eq!(job.run(&[]).code, 75);
    // A harness page frames the report at 1200 px and measures every element
    // of it (the report itself runs no script).
    job.dir.write(
        "measure.html",
        r#"<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="job.report.html" style="width:1200px;height:6000px;border:0"></iframe>
<pre id="result">not measured</pre>
<script>
document.getElementById('f').addEventListener('load', function () {
  var doc = this.contentDocument, root = doc.documentElement;
  var width = root.clientWidth, wide = [];
  doc.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > width + 0.5 || r.left < -0.5) {
      wide.push(el.tagName + (el.id ? '#' + el.id : '') + ':' + Math.round(r.right));
    }
  });
  document.getElementById('result').textContent =
    'width=' + width + ' scroll=' + root.scrollWidth + ' elements=' +
    doc.querySelectorAll('body *').length + ' wide=[' + wide.join(' ') + ']';
});
</script></body></html>"#,
    );
    let dom = chromium::dump_dom(
        &job.dir.join("measure.html"),
        1300,
        &[
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
        ],
    );
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .expect("the harness result");
    assert!(result.starts_with("width=1200 scroll=1200 "), "{result}");
    assert!(result.ends_with("wide=[]"), "{result}");
    let elements: u64 = result
        .split("elements=")
        .nth(1)
        .and_then(|e| e.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(elements > 50, "{result}");
}

#[test]
fn mailshot_report_rebuilds_the_page_and_retry_file_and_sends_nothing() {
    let (job, server) = job_with_every_status();
    assert_eq!(job.run(&[]).code, 75);
    let page = job.dir.read("job.report.html");
    let retry = job.dir.read("job.retry.csv");
    assert!(retry.contains("r2@example.test"), "{retry}");
    let commands = server.commands().len();
    std::fs::remove_file(job.dir.join("job.report.html")).unwrap();
    std::fs::remove_file(job.dir.join("job.retry.csv")).unwrap();

    let report = || {
        Mailshot::new(job.dir.path())
            .args(["report", "job.yaml"])
            .limit(RUN_LIMIT)
            .run()
    };
    let out = report();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(job.dir.read("job.report.html"), page);
    assert_eq!(job.dir.read("job.retry.csv"), retry);
    assert_eq!(server.commands().len(), commands, "report sent something");

    // Bounces, when `mailshot bounces` has written them, get their section.
    job.dir.write(
        "job.bounces.csv",
        "email,row,kind,status,diagnostic,message_id,received\n\
         r4@example.test,4,hard,5.1.1,no such user,<b1>,2026-12-01\n\
         r3@other.test,3,soft,4.2.2,mailbox full,<b2>,2026-12-01\n\
         r3@other.test,3,soft,4.2.2,mailbox full,<b3>,2026-12-02\n",
    );
    assert_eq!(report().code, 0);
    let dom = chromium::dump_dom(&job.dir.join("job.report.html"), 1200, &[]);
    let bounces = dom
        .split("<section id=\"bounces\">")
        .nth(1)
        .expect("a bounces section");
    assert!(bounces.contains("<svg"), "{bounces}");
    assert!(
        bounces.contains("hard</th><td class=\"n\">1</td>")
            && bounces.contains("soft</th><td class=\"n\">2</td>"),
        "{bounces}"
    );
}

/// The overview section of a rendered page.
fn overview(dom: &str) -> String {
    let section = dom
        .split("<section id=\"overview\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no overview in {dom}"));
    section.split("</section>").next().unwrap().to_owned()
}

#[test]
fn the_page_shows_the_sessions_of_the_run_next_to_its_duration() {
    let server = FaultServer::builder().start();
    // The command line wins over the job's one session.
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 12);
    let out = job.run(&["--sessions", "3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let html = job.dir.join("job.report.html");
    let shown = |dom: &str| {
        let overview = overview(dom);
        let duration = overview.find("id=\"duration\"").expect("a duration");
        let sessions = overview
            .find("<dt>Sessions</dt><dd id=\"sessions\">3</dd>")
            .unwrap_or_else(|| panic!("no sessions figure of 3 in {overview}"));
        assert!(duration < sessions, "{overview}");
    };
    shown(&chromium::dump_dom(&html, 1200, &[]));

    // `mailshot report` reads them back from the journal.
    std::fs::remove_file(&html).unwrap();
    let out = Mailshot::new(job.dir.path())
        .args(["report", "job.yaml"])
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    shown(&chromium::dump_dom(&html, 1200, &[]));
}

#[test]
fn mailshot_report_without_a_run_says_so() {
    let job = Job::new(&smtp_plain(9, ""), 2);
    let out = Mailshot::new(job.dir.path())
        .args(["report", "job.yaml"])
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(out.stderr.contains("job.report.csv"), "{}", out.stderr);
    assert!(out.stderr.contains("mailshot run"), "{}", out.stderr);
    assert!(!job.dir.join("job.report.html").exists());
}

/// Rows of the big-run check.
const MILLION: u64 = 1_000_000;

/// Writes a finished million-row run: recipients, report and journal, with
/// 40 big domains and a unique domain on every 7th row.
fn write_million_row_run(dir: &crate::support::TestDir) {
    use std::io::Write;
    let file = |name: &str| std::io::BufWriter::new(std::fs::File::create(dir.join(name)).unwrap());
    let (mut csv, mut report, mut journal) = (
        file("recipients.csv"),
        file("job.report.csv"),
        file("job.journal"),
    );
    writeln!(csv, "email,name").unwrap();
    writeln!(
        report,
        "row,email,status,code,enhanced,reply,message_id,attempts"
    )
    .unwrap();
    for row in 1..=MILLION {
        let domain = if row % 7 == 0 {
            format!("d{row}.example")
        } else {
            format!("big{}.example", row % 40)
        };
        let email = format!("u{row}@{domain}");
        let (status, code, enhanced, reply) = match row {
            r if r % 1000 == 0 => ("failed", 451, "4.3.0", "try later"),
            r if r % 500 == 0 => ("rejected", 550, "5.1.1", "no such user"),
            _ => ("sent", 250, "2.0.0", "ok"),
        };
        writeln!(csv, "{email},Name {row}").unwrap();
        writeln!(
            report,
            "{row},{email},{status},{code},{enhanced},{reply},<m{row}@x>,1"
        )
        .unwrap();
        // Spread over 1000 seconds.
        let at = 1_800_000_000_000 + row;
        writeln!(
            journal,
            "{{\"t\":\"outcome\",\"row\":{row},\"email\":\"{email}\",\"status\":\"{status}\",\
             \"code\":{code},\"enhanced\":\"{enhanced}\",\"reply\":\"{reply}\",\
             \"message_id\":\"<m{row}@x>\",\"attempts\":1,\"at\":{at}}}\t00000000"
        )
        .unwrap();
    }
}

#[test]
fn a_million_row_report_builds_in_seconds_and_bounded_memory() {
    let job = Job::new(&smtp_plain(9, ""), 1);
    write_million_row_run(&job.dir);
    // GNU time reports the peak resident set of mailshot alone.
    let rss_file = job.dir.join("rss");
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(crate::support::cmd::mailshot_bin())
        .args(["report", "job.yaml"])
        .current_dir(job.dir.path());
    let out = spawn_command(cmd).finish_within(std::time::Duration::from_secs(120));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let peak_kib: u64 = job.dir.read("rss").trim().parse().unwrap();
    eprintln!("a million rows: {:?}, peak RSS {peak_kib} KiB", out.elapsed);
    // Counting every distinct domain would take about 40 MB here.
    assert!(peak_kib < 32 * 1024, "peak RSS {peak_kib} KiB");
    assert!(
        out.elapsed < std::time::Duration::from_secs(60),
        "{:?}",
        out.elapsed
    );

    let page = job.dir.read("job.report.html");
    assert!(page.contains("<td class=\"n\">1000000</td>"), "the total");
    // 1000 failed, 1000 rejected (every 500th but not every 1000th).
    assert!(page.contains("failed</th><td class=\"n\">1000</td>"));
    assert!(page.contains("rejected</th><td class=\"n\">1000</td>"));
    assert!(
        page.contains("<th scope=\"row\">other</th>"),
        "domains past the top 20"
    );
    let retry = std::fs::read_to_string(job.dir.join("job.retry.csv")).unwrap();
    assert_eq!(retry.lines().count(), 1 + 1000);
    assert!(retry.contains("\nu1000@"), "row 1000 is failed");
}
