//! Resume knows every input: after a run that did not send every row, a
//! change to any input the messages are made of — an extended or included
//! template, an attachment, an inline image, a `--var`, the DKIM key, the
//! user config's settings — is refused (exit 65) with the input named, and
//! the server receives nothing more; unchanged inputs resume.

use std::process::Command;

use super::helpers::*;
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::TestDir;

const ROWS: usize = 6;

/// Runs the first two rows (`--limit 2`, a run that leaves the rest of the
/// list to a later run), applies `change`, and asserts the rerun is refused
/// naming `name`, with nothing more sent. Then undoes the change with
/// `undo` and asserts the rerun resumes: every row exactly once.
fn refused_then_resumed(
    job: &Job,
    server: &FaultHandle,
    args: &[&str],
    change: impl FnOnce(&TestDir),
    name: &str,
    undo: impl FnOnce(&TestDir),
) {
    let first: Vec<&str> = ["--quiet", "--limit", "2"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let out = job.run(&first);
    assert_eq!(out.code, 0, "first two rows: {}", out.stderr);
    assert_eq!(server.messages().len(), 2);

    change(&job.dir);
    let rest: Vec<&str> = ["--quiet"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let out = job.run(&rest);
    assert_eq!(out.code, 65, "a changed input is refused: {}", out.stderr);
    assert!(
        out.stderr.contains(name),
        "the error names {name:?}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--restart") && out.stderr.to_lowercase().contains("undo the change"),
        "the error says what to do: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("2 of 6 rows"),
        "the error says how far the earlier run got: {}",
        out.stderr
    );
    assert_eq!(server.messages().len(), 2, "nothing sent while refused");

    undo(&job.dir);
    let out = job.run(&rest);
    assert_eq!(out.code, 0, "unchanged inputs resume: {}", out.stderr);
    assert_each_once(server, ROWS);
}

fn job_with(server: &FaultHandle, extra_yaml: &str) -> Job {
    Job::with_csv(&smtp_plain(server.port(), ""), &csv_rows(ROWS), extra_yaml)
}

/// A change (or its undoing): write `new` to `rel`.
fn replace(rel: &'static str, new: &'static str) -> impl FnOnce(&TestDir) {
    move |dir: &TestDir| {
        dir.write(rel, new);
    }
}

#[test]
fn an_extended_template_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(&server, "html: page.html");
    job.dir.write(
        "layout.html",
        "<html><body>{% block main %}{% endblock %}<p>Regards</p></body></html>\n",
    );
    job.dir.write(
        "page.html",
        "{% extends \"layout.html\" %}{% block main %}<p>Hi {{ name }}</p>{% endblock %}\n",
    );
    refused_then_resumed(
        &job,
        &server,
        &[],
        replace(
            "layout.html",
            "<html><body>{% block main %}{% endblock %}<p>Bye</p></body></html>\n",
        ),
        "layout.html",
        replace(
            "layout.html",
            "<html><body>{% block main %}{% endblock %}<p>Regards</p></body></html>\n",
        ),
    );
}

#[test]
fn an_included_template_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(&server, "html: page.html");
    job.dir.write("footer.html", "<p>Unsubscribe below</p>\n");
    job.dir.write(
        "page.html",
        "<p>Hi {{ name }}</p>{% include \"footer.html\" %}\n",
    );
    refused_then_resumed(
        &job,
        &server,
        &[],
        replace("footer.html", "<p>New footer</p>\n"),
        "footer.html",
        replace("footer.html", "<p>Unsubscribe below</p>\n"),
    );
}

#[test]
fn an_attachment_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(
        &server,
        "attachments:\n  - path: brochure.pdf\n    name: brochure.pdf",
    );
    job.dir.write("brochure.pdf", "%PDF-1.4 first edition");
    refused_then_resumed(
        &job,
        &server,
        &[],
        replace("brochure.pdf", "%PDF-1.4 second edition"),
        "brochure.pdf",
        replace("brochure.pdf", "%PDF-1.4 first edition"),
    );
}

#[test]
fn a_per_row_attachment_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(
        &server,
        "attachments:\n  - path: \"reports/{{ row }}.txt\"\n    name: \"report-{{ row }}.txt\"",
    );
    for i in 1..=ROWS {
        job.dir
            .write(format!("reports/{i}.txt"), format!("report {i}"));
    }
    // Row 1 was sent with its report: a changed report 1 is refused.
    refused_then_resumed(
        &job,
        &server,
        &[],
        replace("reports/1.txt", "report 1, corrected"),
        "report-1.txt",
        replace("reports/1.txt", "report 1"),
    );
}

#[test]
fn an_inline_image_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(&server, "html: page.html");
    job.dir
        .write("page.html", "<p>Hi {{ name }}</p><img src=\"logo.png\">\n");
    job.dir.write("logo.png", b"\x89PNG\r\n\x1a\nfirst");
    refused_then_resumed(
        &job,
        &server,
        &[],
        |dir| {
            dir.write("logo.png", b"\x89PNG\r\n\x1a\nsecond");
        },
        "logo.png",
        |dir| {
            dir.write("logo.png", b"\x89PNG\r\n\x1a\nfirst");
        },
    );
}

#[test]
fn a_var_value_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(&server, "vars: { campaign: spring }");
    job.dir.write(
        "body.txt",
        "Dear {{ name }},\nthe {{ job.campaign }} news.\n",
    );
    let first = job.run(&["--quiet", "--limit", "2", "--var", "campaign=autumn"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(server.messages().len(), 2);

    for args in [
        vec!["--var", "campaign=winter"],
        // Dropping the --var brings the job file's value back: a change too.
        vec![],
    ] {
        let mut all = vec!["--quiet"];
        all.extend(&args);
        let out = job.run(&all);
        assert_eq!(out.code, 65, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("--var campaign"),
            "{args:?} names the variable: {}",
            out.stderr
        );
        assert_eq!(server.messages().len(), 2, "nothing sent while refused");
    }

    let out = job.run(&["--quiet", "--var", "campaign=autumn"]);
    assert_eq!(out.code, 0, "the same --var resumes: {}", out.stderr);
    assert_each_once(&server, ROWS);
}

/// An Ed25519 key made by the openssl CLI.
fn ed25519_key(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(path)
        .status()
        .expect("openssl (scripts/test installs it)");
    assert!(ok.success());
}

#[test]
fn the_dkim_key_is_part_of_the_fingerprint() {
    let server = FaultServer::start();
    let job = job_with(
        &server,
        "dkim: { domain: example.test, selector: s1, key_file: keys/dkim.pem }",
    );
    ed25519_key(&job.dir.join("keys/dkim.pem"));
    let old_key = std::fs::read(job.dir.join("keys/dkim.pem")).unwrap();
    refused_then_resumed(
        &job,
        &server,
        &[],
        |dir| ed25519_key(&dir.join("keys/dkim.pem")),
        "DKIM key keys/dkim.pem",
        move |dir| {
            dir.write("keys/dkim.pem", &old_key);
        },
    );
}

#[test]
fn the_user_config_settings_are_part_of_the_fingerprint() {
    let server = FaultServer::start();
    // No smtp: in the job; the user config ($HOME/.config) names the server.
    let job = Job::with_csv("null", &csv_rows(ROWS), "");
    let config = |helo: &str| {
        format!(
            "smtp: {}\n",
            smtp_plain(server.port(), &format!("helo_name: {helo}"))
        )
    };
    job.dir
        .write(".config/mailshot/config.yaml", config("one.example.test"));
    refused_then_resumed(
        &job,
        &server,
        &[],
        |dir| {
            dir.write(".config/mailshot/config.yaml", config("two.example.test"));
        },
        "smtp.helo_name in the user config",
        |dir| {
            dir.write(".config/mailshot/config.yaml", config("one.example.test"));
        },
    );
}

#[test]
fn a_run_cut_short_by_the_server_is_refused_with_how_far_it_got() {
    // The server drops the connection in the middle of the third message,
    // which with max_attempts: 1 is left for a later run.
    let server = FaultServer::builder().drop_during_data(3).start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "max_attempts: 1"),
        &csv_rows(ROWS),
        "html: page.html",
    );
    job.dir.write("footer.html", "<p>old footer</p>\n");
    job.dir
        .write("page.html", "<p>Hi</p>{% include \"footer.html\" %}\n");
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let sent = server.messages().len();
    assert!(sent < ROWS, "the run left a row unsent: {sent}");

    job.dir.write("footer.html", "<p>new footer</p>\n");
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("footer.html"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{sent} of {ROWS} rows")) && !out.stderr.contains("finished"),
        "the wording fits a run that left rows unsent: {}",
        out.stderr
    );
    assert_eq!(server.messages().len(), sent, "nothing sent while refused");
}

#[test]
fn a_change_after_a_finished_run_says_the_run_finished() {
    let server = FaultServer::start();
    let job = job_with(&server, "");
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, ROWS);

    job.dir
        .write("body.txt", "Dear {{ name }},\na second letter.\n");
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("body.txt"), "{}", out.stderr);
    assert!(
        out.stderr.contains("finished") && !out.stderr.contains("interrupted"),
        "the wording fits a run that finished: {}",
        out.stderr
    );
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    assert_each_once(&server, ROWS);
}

#[test]
fn the_job_file_the_csv_and_a_top_level_template_are_named() {
    let csv = csv_rows(ROWS);
    let cases: [(&str, &str, String); 3] = [
        (
            "job.yaml",
            "the job file job.yaml",
            "headers: { X-Campaign: spring }".into(),
        ),
        (
            "recipients.csv",
            "the recipients file recipients.csv",
            csv.replace("Name 1", "Name One"),
        ),
        (
            "body.txt",
            "the template body.txt",
            "Dear {{ name }},\na new letter.\n".into(),
        ),
    ];
    for (file, name, new) in cases {
        let server = FaultServer::start();
        let job = job_with(&server, "");
        let old = job.dir.read(file);
        let new = if file == "job.yaml" {
            old.replace("text: body.txt", &format!("text: body.txt\n{new}"))
        } else {
            new
        };
        refused_then_resumed(
            &job,
            &server,
            &[],
            move |dir| {
                dir.write(file, new);
            },
            name,
            move |dir| {
                dir.write(file, old);
            },
        );
    }
}
