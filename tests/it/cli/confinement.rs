//! A CSV value can never make mailshot read a file it was not meant to:
//! rendered attachment and inline-image paths stay inside the job's folder,
//! values inserted into Markdown and HTML stay text, template names stay in
//! the job's folder and the nearby `templates/` folders, files are
//! size-checked before they are read, and a file that every row attaches is
//! opened once per run. Driven through the built binary, as a user would.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MimeHeaders;

use super::{assert_unchanged, emls, parse, snapshot};
use crate::support::cmd::{mailshot, mailshot_bin, spawn_command, Output};
use crate::support::fault::FaultServer;
use crate::support::TestDir;

/// A folder holding `secret.txt` (outside the job) and the job folder `job/`.
struct Layout {
    root: TestDir,
}

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-JOB";

impl Layout {
    fn new() -> Layout {
        let root = TestDir::new();
        root.write("secret.txt", SECRET);
        root.write("job/body.txt", "Hi {{ name }}\n");
        Layout { root }
    }

    fn job_dir(&self) -> std::path::PathBuf {
        self.root.join("job")
    }

    fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        self.root.write(Path::new("job").join(rel), contents);
    }

    /// `mailshot ARGS` in the job folder, with `env` added, killed after
    /// `limit` (a run that hangs fails the test instead of hanging it).
    fn run_env(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        mailshot(&self.job_dir(), args)
            .private_config()
            .envs(env)
            .limit(limit)
            .run()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[], Duration::from_secs(60))
    }

    /// `run job.yaml --dry-run --out out`; the messages, by row.
    fn dry_run(&self, env: &[(&str, &str)]) -> std::collections::BTreeMap<u64, Vec<u8>> {
        let out = self.job_dir().join("out");
        self.run_env(
            &[
                "run",
                "job.yaml",
                "--dry-run",
                "--out",
                out.to_str().unwrap(),
            ],
            env,
            Duration::from_secs(60),
        )
        .expect_code(0);
        emls(&out)
    }
}

/// The stderr line that names `row` and contains every one of `needles`.
#[track_caller]
fn line_naming<'a>(run: &'a Output, row: u64, needles: &[&str]) -> &'a str {
    run.stderr
        .lines()
        .find(|l| l.contains(&format!("(row {row})")) && needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no error naming row {row} and {needles:?}:\n{}", run.stderr))
}

fn job_yaml(smtp_port: Option<u16>, body: &str, extra: &str) -> String {
    let smtp = smtp_port.map_or(String::new(), |port| {
        format!("smtp: {{ url: \"smtp+plain://127.0.0.1:{port}\", timeout: 2s }}\n")
    });
    format!(
        "{smtp}from: \"Sender <sender@example.com>\"\nsubject: Hi\n{body}\n{extra}\nrecipients:\n  file: r.csv\n"
    )
}

#[test]
fn rendered_attachment_paths_outside_the_job_fail_the_row_and_nothing_is_sent() {
    let server = FaultServer::start();
    let l = Layout::new();
    l.write("docs/a.txt", "inside");
    std::os::unix::fs::symlink(l.root.join("secret.txt"), l.job_dir().join("docs/link")).unwrap();
    let secret_abs = l.root.join("secret.txt");
    let csv = format!(
        "email,name,file\n\
         a@example.com,A,docs/a.txt\n\
         b@example.com,B,../secret.txt\n\
         c@example.com,C,{}\n\
         d@example.com,D,docs/link\n\
         e@example.com,E,docs/../../secret.txt\n",
        secret_abs.display()
    );
    l.write("r.csv", csv);
    l.write(
        "job.yaml",
        job_yaml(
            Some(server.port()),
            "text: body.txt",
            "attachments:\n  - path: \"{{ file }}\"",
        ),
    );
    let before = snapshot(&l.job_dir());

    let check = l.run(&["check", "job.yaml"]);
    check.expect_code(65);
    let secret_text = secret_abs.display().to_string();
    for (row, path) in [
        (2, "../secret.txt"),
        (3, secret_text.as_str()),
        (4, "docs/link"),
        (5, "docs/../../secret.txt"),
    ] {
        line_naming(
            &check,
            row,
            &[path, "attachments[0].path", "outside the job's folder"],
        );
    }
    assert!(!check.stderr.contains("(row 1)"), "{}", check.stderr);

    l.run(&["run", "job.yaml", "--quiet"]).expect_code(65);
    assert_unchanged(&before, &l.job_dir(), "run");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 0, "a session was opened");
    assert!(server.messages().is_empty(), "a message was sent");
}

#[test]
fn a_path_written_literally_in_the_job_may_point_outside_it() {
    let l = Layout::new();
    l.write("r.csv", "email,name\na@example.com,A\n");
    l.write(
        "job.yaml",
        job_yaml(
            None,
            "text: body.txt",
            "attachments:\n  - path: ../secret.txt",
        ),
    );
    let msgs = l.dry_run(&[]);
    let m = parse(&msgs[&1]);
    assert_eq!(m.attachment_count(), 1);
    assert_eq!(m.attachment(0).unwrap().contents(), SECRET.as_bytes());
}

#[test]
fn values_inserted_into_markdown_and_html_never_attach_a_file() {
    let l = Layout::new();
    let secret_abs = l.root.join("secret.txt").display().to_string();
    let names = [
        "![x](/proc/self/environ)".to_string(),
        "<img src=\"/etc/passwd\">".to_string(),
        format!("![x]({secret_abs})"),
        format!("<img src='{secret_abs}'>"),
        format!("[![x]({secret_abs})](https://example.com)"),
    ];
    let mut csv = String::from("email,name\n");
    for (i, n) in names.iter().enumerate() {
        csv.push_str(&format!(
            "u{i}@example.com,\"{}\"\n",
            n.replace('"', "\"\"")
        ));
    }
    l.write("r.csv", csv);
    l.write("letter.md", "# Hello {{ name }}\n\nWelcome, {{ name }}.\n");
    l.write("letter.html", "<p>Hello {{ name }}</p>\n");
    // /proc/self/environ carries the SMTP password of a real run.
    let env = [("MAILSHOT_PASSWORD", "pw-from-the-environment")];
    for body in ["markdown: letter.md", "html: letter.html"] {
        l.write("job.yaml", job_yaml(None, body, ""));
        let msgs = l.dry_run(&env);
        assert_eq!(msgs.len(), names.len());
        for (row, raw) in &msgs {
            let m = parse(raw);
            assert_eq!(m.attachment_count(), 0, "{body}, row {row}");
            let text = String::from_utf8_lossy(raw);
            assert!(!text.contains(SECRET), "{body}, row {row}");
            assert!(
                !text.contains("pw-from-the-environment"),
                "{body}, row {row}"
            );
            let html = m.body_html(0).expect("an HTML part");
            assert!(!html.contains("<img"), "{body}, row {row}: {html}");
            assert!(!html.contains("<a "), "{body}, row {row}: {html}");
        }
        // The value is shown as text.
        let first = parse(&msgs[&1]);
        let shown = html_escape::decode_html_entities(&first.body_html(0).unwrap()).into_owned();
        assert!(
            shown.contains("![x](/proc/self/environ)"),
            "{body}: {shown}"
        );
    }
}

#[test]
fn img_src_from_a_value_is_entity_decoded_and_stays_in_the_job() {
    let l = Layout::new();
    l.write("img/logo.png", "LOGO-BYTES");
    l.write("img/o'brien.png", "OBRIEN-BYTES");
    l.write("letter.html", "<p>Hi</p><img src=\"{{ pic }}\">\n");
    l.write("job.yaml", job_yaml(None, "html: letter.html", ""));
    l.write(
        "r.csv",
        "email,pic\na@example.com,img/logo.png\nb@example.com,img/o'brien.png\n",
    );
    let msgs = l.dry_run(&[]);
    for (row, want) in [(1, "LOGO-BYTES"), (2, "OBRIEN-BYTES")] {
        let m = parse(&msgs[&row]);
        let part = m
            .attachment(0)
            .unwrap_or_else(|| panic!("row {row}: no inline image"));
        assert_eq!(part.contents(), want.as_bytes(), "row {row}");
        let cid = part.content_id().expect("a Content-ID");
        assert!(m.body_html(0).unwrap().contains(&format!("cid:{cid}")));
    }

    std::os::unix::fs::symlink(l.root.join("secret.txt"), l.job_dir().join("img/s.png")).unwrap();
    l.write(
        "r.csv",
        "email,pic\na@example.com,img/logo.png\nb@example.com,../secret.txt\nc@example.com,img/s.png\n",
    );
    let check = l.run(&["check", "job.yaml"]);
    check.expect_code(65);
    line_naming(&check, 2, &["../secret.txt", "inline image", "outside"]);
    line_naming(&check, 3, &["img/s.png", "inline image", "outside"]);
}

#[test]
fn templates_resolve_only_in_the_job_folder_and_nearby_templates_folders() {
    let root = TestDir::new();
    root.write("templates/far.txt", "FAR");
    root.write("a/templates/near.txt", "NEAR");
    root.write("a/b/secret.txt", SECRET);
    root.write("a/b/job/r.csv", "email\nx@example.com\n");
    root.write("a/b/job/job.yaml", job_yaml(None, "text: body.txt", ""));
    let job_dir = root.join("a/b/job");
    let run = |include: &str| {
        root.write(
            "a/b/job/body.txt",
            format!("{{% include \"{include}\" %}}\n"),
        );
        super::mailshot_in(&job_dir, &["check", "job.yaml"])
    };
    // Two levels above the job folder is the farthest `templates/` looked at.
    run("near.txt").expect_code(0);
    let out = super::mailshot_in(&job_dir, &["preview", "job.yaml"]);
    out.expect_code(0);
    assert!(out.stdout.contains("NEAR"));

    for (include, why) in [
        ("far.txt", "not found"),
        ("../secret.txt", "refused"),
        ("templates/../../secret.txt", "refused"),
        ("/etc/hostname", "refused"),
    ] {
        let check = run(include);
        check.expect_code(65);
        let line = check
            .stderr
            .lines()
            .find(|l| l.contains(&format!("\"{include}\"")) && l.contains(why))
            .unwrap_or_else(|| panic!("{include}: no error naming it:\n{}", check.stderr));
        assert!(line.contains("body.txt"), "{line}");
        assert!(!check.stderr.contains(SECRET));
    }
}

#[test]
fn dev_zero_fifos_and_oversized_files_fail_fast_in_bounded_memory() {
    let l = Layout::new();
    l.write("r.csv", "email\na@example.com\nb@example.com\n");
    let fifo = l.job_dir().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for (path, why) in [
        ("/dev/zero", "not a regular file"),
        ("pipe", "not a regular file"),
    ] {
        l.write(
            "job.yaml",
            job_yaml(
                None,
                "text: body.txt",
                &format!("attachments:\n  - path: {path}"),
            ),
        );
        // 1 GiB of address space: reading /dev/zero to the end cannot fit.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
            .arg(mailshot_bin())
            .args(["run", "job.yaml", "--dry-run", "--out", "out"])
            .current_dir(l.job_dir())
            .env("XDG_CONFIG_HOME", l.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let run = spawn_command(cmd).finish_within(Duration::from_secs(30));
        run.expect_code(65);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{path}: too slow"
        );
        line_naming(&run, 1, &[path, why]);
        assert!(!l.job_dir().join("out").exists(), "{path}: wrote messages");
    }

    l.write("big.bin", vec![b'x'; 5_000]);
    l.write("small.bin", "fits");
    l.write(
        "job.yaml",
        job_yaml(
            None,
            "text: body.txt",
            "max_attachment_size: 1KB\nattachments:\n  - path: \"{{ f }}\"",
        ),
    );
    l.write(
        "r.csv",
        "email,f\na@example.com,small.bin\nb@example.com,big.bin\n",
    );
    let check = l.run(&["check", "job.yaml"]);
    check.expect_code(65);
    line_naming(&check, 2, &["big.bin", "max_attachment_size (1KB)"]);
    assert!(!check.stderr.contains("(row 1)"), "{}", check.stderr);

    l.write(
        "job.yaml",
        job_yaml(None, "text: body.txt", "max_attachment_size: lots"),
    );
    let bad = l.run(&["check", "job.yaml"]);
    bad.expect_code(65);
    assert!(bad.stderr.contains("max_attachment_size"), "{}", bad.stderr);
}

/// Every `open`/`openat`/`openat2` of a path ending in `name` in an strace log.
fn opens_of(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("open") && l.contains(&format!("{name}\"")))
        .count()
}

#[test]
fn a_file_every_row_attaches_is_opened_once_per_run() {
    let l = Layout::new();
    l.write("terms.pdf", "%PDF-1.4 the terms");
    l.write("logo.png", "PNG-LOGO");
    l.write("letter.html", "<img src=\"{{ pic }}\"><p>Hi</p>\n");
    l.write(
        "job.yaml",
        job_yaml(
            None,
            "html: letter.html",
            "attachments:\n  - path: \"{{ doc }}\"",
        ),
    );
    let mut csv = String::from("email,doc,pic\n");
    for i in 0..40 {
        csv.push_str(&format!("u{i}@example.com,terms.pdf,logo.png\n"));
    }
    l.write("r.csv", csv);
    let log = l.root.join("strace.log");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&log)
        .arg(mailshot_bin())
        .args(["run", "job.yaml", "--dry-run", "--out", "out"])
        .current_dir(l.job_dir())
        .env("XDG_CONFIG_HOME", l.root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace is needed for this test (scripts/test installs it)");
    assert!(status.success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(opens_of(&log, "terms.pdf"), 1, "{log}");
    assert_eq!(opens_of(&log, "logo.png"), 1, "{log}");
    // And every message carries the file.
    let msgs = emls(&l.job_dir().join("out"));
    assert_eq!(msgs.len(), 40);
    for raw in msgs.values() {
        let m = parse(raw);
        let contents: Vec<&[u8]> = m.attachments().map(|a| a.contents()).collect();
        assert!(contents.contains(&&b"%PDF-1.4 the terms"[..]));
        assert!(contents.contains(&&b"PNG-LOGO"[..]));
    }
}

#[test]
fn send_refuses_to_attach_a_device_before_connecting() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let run = mailshot(
        dir.path(),
        ["send", "--to", "a@example.com", "--from", "b@example.com"],
    )
    .args(["--subject", "s", "--attach", "/dev/zero", "--smtp", &url])
    .env("XDG_CONFIG_HOME", dir.path())
    .limit(Duration::from_secs(30))
    .run();
    run.expect_code(66);
    assert!(run.stderr.contains("/dev/zero"), "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert_eq!(server.connections(), 0);
}
