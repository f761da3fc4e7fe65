//! Bad input: bad input gets the right exit code and one clear
//! message naming the file, line/row and column — from `check`, from
//! `run --dry-run` and from `run` alike — and nothing is written or sent.

use std::time::Duration;

use super::{assert_unchanged, snapshot, JobDir};
use crate::support::fault::FaultServer;

/// One kind of bad input.
struct Case {
    name: &'static str,
    /// Files to write into the job folder (job.yaml, r.csv, templates...).
    files: &'static [(&'static str, &'static [u8])],
    /// The job file to pass (may be missing).
    job: &'static str,
    code: i32,
    /// The row `preview --row` is asked for (the bad one).
    row: &'static str,
    /// Every fragment must appear in the one diagnostic line.
    expect: &'static [&'static str],
}

/// The job body after the `smtp:` line the test adds.
const OK_JOB: &[u8] =
    b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nrecipients:\n  file: r.csv\n";
const OK_CSV: &[u8] = b"email,name\nann@example.com,Ann\n";

const CASES: &[Case] = &[
    Case {
        name: "missing job file",
        files: &[("r.csv", OK_CSV)],
        job: "absent.yaml",
        row: "1",
        code: 66,
        expect: &["absent.yaml"],
    },
    Case {
        name: "YAML syntax error",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\n text: body.txt\nrecipients:\n  file: r.csv\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["job.yaml:3:"],
    },
    Case {
        name: "unknown top-level key",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nsubjet: typo\nrecipients:\n  file: r.csv\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["job.yaml:4:1", "subjet"],
    },
    Case {
        name: "unknown nested key",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nrecipients:\n  file: r.csv\n  delimeter: \";\"\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["job.yaml:6:3", "delimeter"],
    },
    Case {
        name: "CSV lacks a column the subject uses",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: \"News for {{ city }}\"\ntext: body.txt\nrecipients:\n  file: r.csv\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["job.yaml:2", "row 1", "city"],
    },
    Case {
        name: "ragged CSV row",
        files: &[
            ("job.yaml", OK_JOB),
            ("r.csv", b"email,name\nann@example.com,Ann\nbob@example.com,Bob,extra\n"),
        ],
        job: "job.yaml",
        row: "2",
        code: 65,
        expect: &["r.csv:3", "row 2", "2", "3"],
    },
    Case {
        name: "invalid UTF-8 in a UTF-8 CSV",
        files: &[
            ("job.yaml", OK_JOB),
            ("r.csv", b"email,name\nann@example.com,Ann\nbob@example.com,B\xffob\n"),
        ],
        job: "job.yaml",
        row: "2",
        code: 65,
        expect: &["r.csv:3", "row 2", "column \"name\"", "UTF-8"],
    },
    Case {
        name: "invalid address",
        files: &[
            ("job.yaml", OK_JOB),
            ("r.csv", b"email,name\nann@example.com,Ann\nbob.example.com,Bob\n"),
        ],
        job: "job.yaml",
        row: "2",
        code: 65,
        expect: &["r.csv:3", "row 2", "column \"email\"", "bob.example.com"],
    },
    Case {
        name: "missing attachment",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nattachments:\n  - path: \"files/{{ name }}.pdf\"\nrecipients:\n  file: r.csv\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["Ann.pdf", "row 1", "attachments[0].path"],
    },
    Case {
        name: "template syntax error",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: bad.txt\nrecipients:\n  file: r.csv\n",
            ),
            ("bad.txt", b"Hello,\n{{ name }\nbye\n"),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["bad.txt:2", "syntax"],
    },
    Case {
        name: "undefined variable in a template file",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: und.txt\nrecipients:\n  file: r.csv\n",
            ),
            ("und.txt", b"Hello,\n\n{{ nmae }}\n"),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 65,
        expect: &["und.txt:3", "row 1", "nmae"],
    },
    Case {
        name: "missing CSV file",
        files: &[("job.yaml", OK_JOB)],
        job: "job.yaml",
        row: "1",
        code: 66,
        expect: &["r.csv"],
    },
    Case {
        name: "missing template file",
        files: &[
            (
                "job.yaml",
                b"from: \"Sender <sender@example.com>\"\nsubject: S\ntext: nowhere.txt\nrecipients:\n  file: r.csv\n",
            ),
            ("r.csv", OK_CSV),
        ],
        job: "job.yaml",
        row: "1",
        code: 66,
        expect: &["nowhere.txt"],
    },
];

/// Prefixes the job with an `smtp:` section pointing at `port`, so `run`
/// has a real server it must not use.
fn with_smtp(contents: &[u8], port: u16) -> Vec<u8> {
    let mut v = format!(
        "smtp: {{ url: \"smtp+plain://127.0.0.1:{port}\", timeout: 2s, retry_delay: 50ms, max_attempts: 3 }}\n"
    )
    .into_bytes();
    v.extend_from_slice(contents);
    v
}

#[test]
fn every_bad_input_gets_its_exit_code_one_message_and_writes_nothing() {
    let server = FaultServer::start();
    for case in CASES {
        let jd = JobDir::new();
        for (name, contents) in case.files {
            if *name == "job.yaml" {
                // `shift_line` moves the expected YAML line numbers to match.
                jd.dir.write(name, with_smtp(contents, server.port()));
            } else {
                jd.dir.write(name, contents);
            }
        }
        let before = snapshot(jd.dir.path());
        let out = jd.dir.join("out");
        let runs = [
            ("check", jd.run(&["check", case.job])),
            (
                "dry run",
                jd.run(&["run", case.job, "--dry-run", "--out", out.to_str().unwrap()]),
            ),
            ("run", jd.run(&["run", case.job, "--quiet"])),
            ("preview", jd.run(&["preview", case.job, "--row", case.row])),
        ];
        for (cmd, run) in &runs {
            let what = format!("{} ({cmd})", case.name);
            assert_eq!(
                run.code, case.code,
                "{what}: exit code; stderr:\n{}",
                run.stderr
            );
            let lines: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            assert_eq!(lines.len(), 1, "{what}: one message:\n{}", run.stderr);
            for fragment in case.expect {
                let fragment = shift_line(fragment, case.files);
                assert!(
                    lines[0].contains(&fragment),
                    "{what}: {fragment:?} missing from {:?}",
                    lines[0]
                );
            }
            assert!(run.stdout.is_empty(), "{what}: stdout not empty");
        }
        assert_unchanged(&before, jd.dir.path(), case.name);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 0, "a session was opened");
    assert!(server.messages().is_empty());
}

/// `job.yaml:N…` expectations count lines of the job as written in the case;
/// the test put one `smtp:` line on top, so they move down by one.
fn shift_line(fragment: &str, files: &[(&str, &[u8])]) -> String {
    let Some(rest) = fragment.strip_prefix("job.yaml:") else {
        return fragment.to_string();
    };
    if !files.iter().any(|(n, _)| *n == "job.yaml") {
        return fragment.to_string();
    }
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let line: u64 = digits.parse().expect("a line number");
    format!("job.yaml:{}{}", line + 1, &rest[digits.len()..])
}

#[test]
fn check_lists_every_failing_row_not_just_the_first() {
    let jd = JobDir::new();
    jd.dir
        .write("body.txt", "Hi {{ name }}, your code is {{ code }}\n");
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: \"Hi {{ name }}\"\ntext: body.txt\nrecipients:\n  file: r.csv\n",
    );
    // Rows 2, 4 and 6 are bad in three different ways; 1, 3 and 5 are fine.
    jd.csv(
        b"email,name,code\n\
ann@example.com,Ann,1\n\
not-an-address,Bob,2\n\
cy@example.com,Cy,3\n\
dee@example.com,\"Dee\r\nBcc: victim@example.com\",4\n\
eve@example.com,Eve,5\n\
fay@example.com,F\xe4y,6\n",
    );
    let before = snapshot(jd.dir.path());
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    for (row, hint) in [(2, "email"), (4, "subject"), (6, "name")] {
        assert!(
            check
                .stderr
                .lines()
                .any(|l| l.contains(&format!("row {row}")) && l.contains(hint)),
            "row {row} ({hint}) not listed:\n{}",
            check.stderr
        );
    }
    for good in [1, 3, 5] {
        assert!(
            !check.stderr.contains(&format!("row {good})"))
                && !check.stderr.contains(&format!("row {good},")),
            "good row {good} blamed:\n{}",
            check.stderr
        );
    }
    assert_unchanged(&before, jd.dir.path(), "check");
}

#[test]
fn every_undefined_variable_of_every_row_is_listed() {
    // A column present in the header but the template also uses two unknown
    // names: both named, on every row, with the template file and line.
    let jd = JobDir::new();
    jd.dir
        .write("body.txt", "Hi {{ name }}\n{{ first }}\n{{ second }}\n");
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nrecipients:\n  file: r.csv\n",
    );
    jd.csv("email,name\na@example.com,A\nb@example.com,B\nc@example.com,C\n");
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    for row in 1..=3 {
        for (var, line) in [("first", 2), ("second", 3)] {
            assert!(
                check
                    .stderr
                    .lines()
                    .any(|l| l.contains(&format!("body.txt:{line}"))
                        && l.contains(&format!("row {row}"))
                        && l.contains(var)),
                "row {row} {var}:\n{}",
                check.stderr
            );
        }
    }
}
