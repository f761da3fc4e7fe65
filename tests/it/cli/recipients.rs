//! Recipients files from the command line: GBK / GB18030 CSVs (as Excel in
//! China writes them), a UTF-8 BOM, another delimiter, and duplicate
//! addresses reported and skipped unless `allow_duplicates: true`.

use std::time::Duration;

use super::{parse, JobDir};
use crate::support::fault::FaultServer;
use crate::support::report::{read_report, ReportRow};

const JOB_HEAD: &str = "from: \"Sender <sender@example.com>\"\nto: \"{{ name }} <{{ email }}>\"\nsubject: \"Hello {{ name }}\"\ntext: body.txt\n";

/// Dry-runs `job.yaml` in `jd` and returns (row, To display name, subject, text).
fn dry_run(jd: &JobDir) -> Vec<(u64, String, String, String)> {
    jd.dry_run()
        .iter()
        .map(|(row, raw)| {
            let msg = parse(raw);
            let name = msg
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.name())
                .unwrap_or("")
                .to_string();
            (
                *row,
                name,
                msg.subject().unwrap_or("").to_string(),
                msg.body_text(0).unwrap_or_default().into_owned(),
            )
        })
        .collect()
}

#[test]
fn gbk_and_gb18030_csvs_render_chinese_names_exactly() {
    // 𠮷 (U+20BB7) exists only in GB18030 (four bytes); GBK cannot hold it.
    for (label, encoding, names) in [
        ("gbk", encoding_rs::GBK, &["李雷", "韩梅梅", "欧阳娜娜"][..]),
        (
            "gb18030",
            encoding_rs::GB18030,
            &["李雷", "𠮷野家", "王芳"][..],
        ),
    ] {
        let jd = JobDir::new();
        let mut csv = String::from("email,name\r\n");
        for (i, n) in names.iter().enumerate() {
            csv.push_str(&format!("user{i}@example.com,{n}\r\n"));
        }
        let (bytes, _, unmappable) = encoding.encode(&csv);
        assert!(!unmappable, "{label}: test data must be encodable");
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "{label}: really not UTF-8"
        );
        jd.csv(&bytes);
        jd.job(&format!(
            "{JOB_HEAD}recipients:\n  file: r.csv\n  encoding: {label}\n"
        ));
        let got = dry_run(&jd);
        assert_eq!(got.len(), names.len(), "{label}");
        for ((row, name, subject, text), want) in got.iter().zip(names) {
            assert_eq!(name, want, "{label} row {row}: To display name");
            assert_eq!(subject, &format!("Hello {want}"), "{label} row {row}");
            assert_eq!(text.trim_end(), format!("Hi {want}"), "{label} row {row}");
        }
        // Without the encoding key the same file is invalid UTF-8, named as such.
        jd.job(&format!("{JOB_HEAD}recipients:\n  file: r.csv\n"));
        let check = jd.run(&["check", "job.yaml"]);
        check.expect_code(65);
        assert!(check.stderr.contains("UTF-8"), "{label}: {}", check.stderr);
        assert!(
            check.stderr.contains("column \"name\""),
            "{label}: {}",
            check.stderr
        );
    }
}

#[test]
fn utf8_bom_is_tolerated_and_semicolons_work_as_delimiter() {
    let jd = JobDir::new();
    jd.dir.write("body.txt", "Hi {{ name }}: {{ note }}\n");
    // The BOM must not end up in the first column's name ("\u{feff}email"),
    // and the commas stay inside their field.
    jd.csv(
        "\u{feff}email;name;note\r\nann@example.com;Ann;tea, cake\r\nbo@example.com;Bó;\"x;y\"\r\n",
    );
    jd.job(&format!(
        "{JOB_HEAD}recipients:\n  file: r.csv\n  delimiter: \";\"\n"
    ));
    jd.run(&["check", "job.yaml"]).expect_code(0);
    let got = dry_run(&jd);
    let seen: Vec<(&str, &str)> = got.iter().map(|g| (g.1.as_str(), g.3.trim_end())).collect();
    assert_eq!(seen, [("Ann", "Hi Ann: tea, cake"), ("Bó", "Hi Bó: x;y")]);

    // The same file with the default delimiter has no `email` column.
    jd.job(&format!("{JOB_HEAD}recipients:\n  file: r.csv\n"));
    let r = jd.run(&["check", "job.yaml"]);
    r.expect_code(65);
    assert!(r.stderr.contains("email"), "{}", r.stderr);
}

/// A job sending to the fault server on `port`, with `extra` recipient keys.
fn send_job(port: u16, extra: &str) -> String {
    format!(
        "smtp: {{ url: \"smtp+plain://127.0.0.1:{port}\", timeout: 2s, retry_delay: 50ms, max_attempts: 3 }}\n\
         {JOB_HEAD}recipients:\n  file: r.csv\n{extra}"
    )
}

const DUP_CSV: &str =
    "email,name\nann@example.com,Ann\nbob@example.com,Bob\nann@example.com,Ann again\n";

fn report_rows(jd: &JobDir) -> Vec<ReportRow> {
    read_report(&jd.dir.join("job.report.csv"))
}

#[test]
fn duplicates_are_reported_and_skipped() {
    let server = FaultServer::start();
    let jd = JobDir::new();
    jd.csv(DUP_CSV);
    jd.job(&send_job(server.port(), ""));

    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(0);
    assert!(
        check.stderr.contains("duplicate"),
        "check says so: {}",
        check.stderr
    );

    let preview = jd.run(&["preview", "job.yaml", "--row", "3"]);
    assert_ne!(
        preview.code, 0,
        "previewing a skipped duplicate is an error"
    );
    assert!(
        preview.stderr.contains("row 1"),
        "names the first row: {}",
        preview.stderr
    );

    assert_eq!(jd.dry_run().keys().copied().collect::<Vec<_>>(), [1, 2]);

    jd.run(&["run", "job.yaml", "--quiet"]).expect_code(0);
    let msgs = server.wait_for_messages(2, Duration::from_secs(10));
    let to_ann = msgs
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "ann@example.com"))
        .count();
    assert_eq!(to_ann, 1, "ann gets one message");
    assert_eq!(msgs.len(), 2);
    let rows = report_rows(&jd);
    let dup = rows
        .iter()
        .find(|r| r.row == 3)
        .expect("row 3 in the report");
    assert_eq!(dup.email, "ann@example.com");
    assert_eq!(dup.status, "skipped");
}

#[test]
fn allow_duplicates_sends_every_row() {
    let server = FaultServer::start();
    let jd = JobDir::new();
    jd.csv(DUP_CSV);
    jd.job(&send_job(server.port(), "  allow_duplicates: true\n"));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(0);
    assert!(check.stderr.contains("3 messages"), "{}", check.stderr);
    jd.run(&["run", "job.yaml", "--quiet"]).expect_code(0);
    let msgs = server.wait_for_messages(3, Duration::from_secs(10));
    let to_ann = msgs
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "ann@example.com"))
        .count();
    assert_eq!(to_ann, 2);
    let rows = report_rows(&jd);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
}
