//! Address templates filled in by CSV values: `{{ user }}@example.com`,
//! `archive+{{ id }}@example.com`, `Manager <mgr+{{ id }}@example.com>` and
//! `{{ name }} <{{ email }}>` give the obvious address for ordinary values,
//! in the message (read back with mail-parser) and in the SMTP envelope a
//! real server received. A value that would add a recipient, a header or
//! change the domain, or that carries an invisible format character, makes
//! its row fail: exit 65, nothing sent, the error names file, row and column.

use std::time::Duration;

use super::{assert_unchanged, header_names, parse, snapshot, JobDir};
use crate::support::fault::FaultServer;

/// The partial-address templates under test, as YAML lines.
const PARTIAL: &str = "to: \"{{ user }}@example.com\"\n\
                       cc: \"Manager <mgr+{{ id }}@example.com>\"\n\
                       bcc: \"archive+{{ id }}@example.com\"\n";

/// A job folder whose body uses no column, so any CSV shape will do.
fn jobdir() -> JobDir {
    let jd = JobDir::new();
    jd.dir.write("body.txt", "Hello\n");
    jd
}

fn smtp(port: u16) -> String {
    format!(
        "smtp: {{ url: \"smtp+plain://127.0.0.1:{port}\", timeout: 2s, retry_delay: 50ms, max_attempts: 2 }}\n"
    )
}

fn job(smtp: &str, keys: &str) -> String {
    format!(
        "{smtp}from: \"Sender <sender@example.com>\"\nsubject: Hi\ntext: body.txt\n{keys}recipients:\n  file: r.csv\n"
    )
}

/// The (name, address) pairs of one address header, as mail-parser reads it.
fn addresses(field: Option<&mail_parser::Address<'_>>) -> Vec<(Option<String>, String)> {
    field
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x.name().map(str::to_string),
                        x.address().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn partial_address_templates_render_the_obvious_addresses() {
    let jd = jobdir();
    jd.csv("email,user,id,name\nann@example.com,ann,4,Ann\nbob@example.com,bob.b,x-5,Bob\n");
    jd.job(&job("", PARTIAL));
    let msgs = jd.dry_run();
    assert_eq!(msgs.len(), 2);
    for (row, user, id) in [(1, "ann", "4"), (2, "bob.b", "x-5")] {
        let raw = &msgs[&row];
        let msg = parse(raw);
        assert_eq!(
            addresses(msg.to()),
            [(None, format!("{user}@example.com"))],
            "row {row}"
        );
        assert_eq!(
            addresses(msg.cc()),
            [(Some("Manager".to_string()), format!("mgr+{id}@example.com"))],
            "row {row}"
        );
        assert!(
            !header_names(raw).contains(&"bcc".to_string()),
            "row {row}: Bcc in the headers"
        );
    }
}

#[test]
fn name_and_email_from_columns_make_one_mailbox() {
    let jd = jobdir();
    jd.csv("email,name\nann@example.com,\"Smith, Ann\"\nbob@example.com,Bob <eve@evil.example>\n");
    jd.job(&job("", "to: \"{{ name }} <{{ email }}>\"\n"));
    let msgs = jd.dry_run();
    let want = [
        (1, "Smith, Ann", "ann@example.com"),
        (2, "Bob <eve@evil.example>", "bob@example.com"),
    ];
    for (row, name, addr) in want {
        let msg = parse(&msgs[&row]);
        assert_eq!(
            addresses(msg.to()),
            [(Some(name.to_string()), addr.to_string())],
            "row {row}"
        );
    }
}

#[test]
fn the_envelope_holds_exactly_the_template_addresses() {
    let server = FaultServer::start();
    let jd = jobdir();
    jd.csv("email,user,id,name\nann@example.com,ann,4,Ann\nbob@example.com,bob.b,x-5,Bob\n");
    jd.job(&job(&smtp(server.port()), PARTIAL));
    jd.run(&["run", "job.yaml", "--quiet"]).expect_code(0);
    let mut got: Vec<Vec<String>> = server
        .wait_for_messages(2, Duration::from_secs(10))
        .iter()
        .map(|m| {
            let mut r = m.rcpts.clone();
            r.sort();
            assert!(
                !header_names(&m.data).contains(&"bcc".to_string()),
                "Bcc on the wire"
            );
            r
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            [
                "ann@example.com",
                "archive+4@example.com",
                "mgr+4@example.com"
            ],
            [
                "archive+x-5@example.com",
                "bob.b@example.com",
                "mgr+x-5@example.com"
            ],
        ]
    );
}

/// Values that must never fill part of an address: each would add a
/// recipient, a header, a route or another domain, or is no address text.
const HOSTILE: &[&str] = &[
    "a,b",
    "x@evil.example",
    "x>, evil@evil.example, <y",
    "evil@evil.example;",
    "team: evil@evil.example;",
    "\"q\"",
    "a\\b",
    "a(comment)b",
    "a b",
    "a\tb",
    "a<b",
    "a:b",
    "a%evil.example",
    "evil.example!a",
    "a\u{feff}b",
    "a\u{200b}b",
    "a\u{202e}b",
    "a\u{ad}b",
    "a\u{3000}b",
];

/// A CSV whose row 1 has `ok` in `column` and each further row one of
/// `values` (every row its own email, so none is skipped as a duplicate).
fn csv_with(column: &str, ok: &str, values: &[&str]) -> String {
    let mut csv = format!("email,{column}\nr1@example.com,{ok}\n");
    for (i, v) in values.iter().enumerate() {
        let v = v.replace('"', "\"\"");
        csv.push_str(&format!("r{}@example.com,\"{v}\"\n", i + 2));
    }
    csv
}

#[test]
fn a_value_that_is_not_address_text_fails_its_row_and_nothing_is_sent() {
    let server = FaultServer::start();
    for (key, template) in [
        ("to", "to: \"{{ user }}@example.com\""),
        ("bcc", "bcc: \"archive+{{ user }}@example.com\""),
        ("cc", "cc: \"Manager <mgr+{{ user }}@example.com>\""),
        ("to", "to: \"someone@{{ user }}.example.com\""),
    ] {
        let jd = jobdir();
        jd.csv(csv_with("user", "ok", HOSTILE));
        jd.job(&job(&smtp(server.port()), &format!("{template}\n")));
        let before = snapshot(jd.dir.path());
        let check = jd.run(&["check", "job.yaml"]);
        check.expect_code(65);
        for (i, value) in HOSTILE.iter().enumerate() {
            let row = i + 2;
            let line = check
                .stderr
                .lines()
                .find(|l| l.contains(&format!("(row {row},")))
                .unwrap_or_else(|| {
                    panic!(
                        "{template}: value {value:?} (row {row}) not rejected:\n{}",
                        check.stderr
                    )
                });
            assert!(line.contains("job.yaml"), "{template}: {line}");
            assert!(line.contains("column \"user\""), "{template}: {line}");
            assert!(line.contains(&format!("{key}:")), "{template}: {line}");
        }
        assert!(!check.stderr.contains("(row 1,"), "{}", check.stderr);
        jd.dry_run_exits(65);
        jd.run(&["run", "job.yaml", "--quiet"]).expect_code(65);
        assert_unchanged(&before, jd.dir.path(), template);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 0, "a session was opened");
}

#[test]
fn a_hostile_email_column_cannot_add_a_recipient_either() {
    let jd = jobdir();
    jd.csv(csv_with(
        "contact",
        "ok@example.com",
        &[
            "a@example.com, evil@evil.example",
            "a@example.com>, <evil@evil.example",
            "team: evil@evil.example;",
        ],
    ));
    jd.job(&job("", "to: \"Ann <{{ contact }}>\"\n"));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    for row in [2, 3, 4] {
        assert!(
            check
                .stderr
                .lines()
                .any(|l| l.contains(&format!("(row {row},")) && l.contains("column \"contact\"")),
            "row {row}:\n{}",
            check.stderr
        );
    }
}

#[test]
fn an_address_error_names_the_address_once() {
    let jd = jobdir();
    jd.csv("email,id\nok@example.com,a..b\n");
    jd.job(&job("", "bcc: \"archive+{{ id }}@example.com\"\n"));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    assert_eq!(
        check.stderr.matches("archive+a..b@example.com").count(),
        1,
        "{}",
        check.stderr
    );
    let jd = jobdir();
    jd.csv("email,name\nok@example.com,Ann\n");
    jd.job(&job("", "cc: \"{{ name }} <bad..address@example.com>\"\n"));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    assert_eq!(
        check.stderr.matches("bad..address@example.com").count(),
        1,
        "{}",
        check.stderr
    );
}

#[test]
fn invisible_format_characters_in_the_email_column_are_rejected() {
    let bad = [
        '\u{feff}', '\u{200b}', '\u{200e}', '\u{2060}', '\u{202a}', '\u{ad}',
    ];
    let jd = jobdir();
    // A BOM at the very start of the file is the file's and stays tolerated.
    let mut csv = String::from("\u{feff}email,name\nok@example.com,Ok\n");
    for c in bad {
        csv.push_str(&format!("us{c}er@example.com,X\n"));
    }
    jd.csv(&csv);
    jd.job(&job("", ""));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    for (i, c) in bad.iter().enumerate() {
        let row = i + 2;
        let line = check
            .stderr
            .lines()
            .find(|l| l.contains(&format!("(row {row},")))
            .unwrap_or_else(|| panic!("U+{:04X} not rejected:\n{}", *c as u32, check.stderr));
        assert!(line.contains("r.csv"), "{line}");
        assert!(line.contains("column \"email\""), "{line}");
        assert!(line.contains(&format!("U+{:04X}", *c as u32)), "{line}");
    }
    assert!(!check.stderr.contains("(row 1,"), "{}", check.stderr);

    let clean = jobdir();
    clean.csv("\u{feff}email,name\nok@example.com,Ok\n");
    clean.job(&job("", ""));
    clean.run(&["check", "job.yaml"]).expect_code(0);
}

#[test]
fn an_invisible_character_from_an_address_template_is_rejected() {
    let jd = jobdir();
    jd.csv(
        "email,user,host\nr1@example.com,ann,example\n\
         r2@example.com,\u{feff}ann,example\nr3@example.com,ann,exa\u{200b}mple\n",
    );
    jd.job(&job("", "to: \"{{ user }}@{{ host }}.com\"\n"));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    for (row, column, c) in [(2, "user", "U+FEFF"), (3, "host", "U+200B")] {
        let line = check
            .stderr
            .lines()
            .find(|l| l.contains(&format!("(row {row},")))
            .unwrap_or_else(|| panic!("row {row} not rejected:\n{}", check.stderr));
        assert!(line.contains("job.yaml"), "{line}");
        assert!(line.contains(&format!("column \"{column}\"")), "{line}");
        assert!(line.contains(c), "{line}");
    }
    assert!(!check.stderr.contains("(row 1,"), "{}", check.stderr);
}
