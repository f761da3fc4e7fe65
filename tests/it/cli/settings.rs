//! Settings: paths resolve against the job file (not the working
//! directory), `smtp.url` schemes map to the right security, and passwords
//! never come from the YAML — neither a `password:` key nor a password in
//! the URL, which is refused without being echoed.

use std::path::Path;

use mailshot::job::{PasswordSource, Security};

use super::{assert_unchanged, emls, mailshot_in, parse, snapshot, JobDir};
use crate::support::TestDir;

/// A job in `campaign/` whose CSV, templates, include and attachment are all
/// given relative to `campaign/`.
fn nested_job(root: &TestDir) {
    root.write(
        "campaign/job.yaml",
        "from: \"Sender <sender@example.com>\"\nsubject: \"Hi {{ name }}\"\ntext: mail/body.txt\n\
         attachments:\n  - path: \"files/{{ id }}.bin\"\nrecipients:\n  file: data/r.csv\n",
    );
    root.write(
        "campaign/mail/body.txt",
        "{% include \"mail/sig.txt\" %} {{ name }}",
    );
    root.write("campaign/mail/sig.txt", "Greetings");
    root.write(
        "campaign/data/r.csv",
        "email,name,id\nann@example.com,Ann,7\n",
    );
    root.write(
        "campaign/files/7.bin",
        [0u8, 1, 2, 255, 254, b'\r', b'\n', 0],
    );
}

#[test]
fn paths_resolve_against_the_job_file_from_any_working_directory() {
    let root = TestDir::new();
    nested_job(&root);
    let elsewhere = TestDir::new();
    let job_abs = root.join("campaign/job.yaml");
    for (cwd, job) in [
        (root.path(), Path::new("campaign/job.yaml")),
        (elsewhere.path(), job_abs.as_path()),
        (
            root.join("campaign/data").as_path().to_owned().as_path(),
            Path::new("../job.yaml"),
        ),
    ] {
        let what = format!("from {} with {}", cwd.display(), job.display());
        let job = job.to_str().unwrap();
        mailshot_in(cwd, &["check", job]).expect_code(0);
        let out = TestDir::new();
        mailshot_in(
            cwd,
            &[
                "run",
                job,
                "--dry-run",
                "--out",
                out.path().to_str().unwrap(),
            ],
        )
        .expect_code(0);
        let msgs = emls(out.path());
        assert_eq!(msgs.len(), 1, "{what}");
        let msg = parse(&msgs[&1]);
        assert_eq!(
            msg.body_text(0).unwrap().trim_end(),
            "Greetings Ann",
            "{what}"
        );
        let att = msg.attachment(0).expect("attachment");
        assert_eq!(
            att.contents(),
            &[0u8, 1, 2, 255, 254, b'\r', b'\n', 0],
            "{what}"
        );
    }
    // Run from the repository's sibling folder with a sample, as the README does.
    let sample = super::repo_root().join("samples/notify/job.yaml");
    let out = TestDir::new();
    mailshot_in(
        elsewhere.path(),
        &[
            "run",
            sample.to_str().unwrap(),
            "--dry-run",
            "--out",
            out.path().to_str().unwrap(),
        ],
    )
    .expect_code(0);
    assert_eq!(emls(out.path()).len(), 3);
}

#[test]
fn a_password_key_in_the_yaml_is_refused_with_the_alternatives() {
    for (smtp, key) in [
        (
            "smtp:\n  host: 127.0.0.1\n  username: me\n  password: hunter2-secret\n",
            "password",
        ),
        ("smtp:\n  host: 127.0.0.1\n  pass: hunter2-secret\n", "pass"),
    ] {
        let jd = JobDir::new();
        jd.csv("email,name\nann@example.com,Ann\n");
        jd.job(&format!("{smtp}{}", super::simple_job("")));
        let before = snapshot(jd.dir.path());
        for args in [&["check", "job.yaml"][..], &["run", "job.yaml", "--quiet"]] {
            let r = jd.run(args);
            r.expect_code(65);
            assert!(r.stderr.contains("job.yaml:"), "{key}: {}", r.stderr);
            assert!(
                r.stderr.contains("password_env"),
                "{key}: helpful: {}",
                r.stderr
            );
            assert!(
                !r.stderr.contains("hunter2"),
                "{key}: echoed the secret: {}",
                r.stderr
            );
        }
        assert_unchanged(&before, jd.dir.path(), key);
    }
}

#[test]
fn a_password_in_the_smtp_url_is_refused_without_echoing_it() {
    for url in [
        "smtps://me%40qq.com:Sup3rS3cret@smtp.qq.com:465",
        "smtp+plain://me:Sup3rS3cret@127.0.0.1:2525",
        "smtp://:Sup3rS3cret@mail.example.com",
    ] {
        let jd = JobDir::new();
        jd.csv("email,name\nann@example.com,Ann\n");
        jd.job(&format!(
            "smtp:\n  url: \"{url}\"\n{}",
            super::simple_job("")
        ));
        let before = snapshot(jd.dir.path());
        for args in [&["check", "job.yaml"][..], &["run", "job.yaml", "--quiet"]] {
            let r = jd.run(args);
            r.expect_code(65);
            assert!(r.stderr.contains("job.yaml:2"), "{url}: {}", r.stderr);
            assert!(
                r.stderr.contains("password"),
                "{url}: says why: {}",
                r.stderr
            );
            assert!(
                !r.stderr.contains("Sup3rS3cret"),
                "{url}: echoed: {}",
                r.stderr
            );
        }
        assert_unchanged(&before, jd.dir.path(), url);
        // The same URL on the command line is refused the same way.
        let r = jd.run(&["run", "job.yaml", "--quiet", "--smtp", url]);
        assert!(
            matches!(r.code, 64 | 65),
            "{url}: {:?} {}",
            r.code,
            r.stderr
        );
        assert!(
            !r.stderr.contains("Sup3rS3cret"),
            "{url}: echoed: {}",
            r.stderr
        );
    }
}

/// Loads a job with only an `smtp:` section through the library.
fn load_smtp(yaml_smtp: &str) -> mailshot::job::SmtpSettings {
    load_smtp_in(&JobDir::new(), yaml_smtp)
}

fn load_smtp_in(jd: &JobDir, yaml_smtp: &str) -> mailshot::job::SmtpSettings {
    jd.csv("email,name\nann@example.com,Ann\n");
    let path = jd.job(&format!("{yaml_smtp}{}", super::simple_job("")));
    let job = mailshot::job::load(&path, &[]).expect("job loads");
    job.smtp.expect("smtp section")
}

#[test]
fn smtp_url_schemes_users_and_password_sources() {
    let s = load_smtp("smtp:\n  url: \"smtps://me%40qq.com@smtp.qq.com\"\n  password_env: PW\n");
    assert_eq!(
        (s.security, s.host.as_str(), s.port, s.username.as_deref()),
        (Security::Tls, "smtp.qq.com", 465, Some("me@qq.com"))
    );
    let s = load_smtp("smtp:\n  url: \"smtp://relay.example.com\"\n");
    assert_eq!(
        (s.security, s.port, s.username),
        (Security::StartTls, 587, None)
    );
    let s = load_smtp("smtp:\n  url: \"smtp+plain://127.0.0.1:2525\"\n");
    assert_eq!((s.security, s.port), (Security::None, 2525));

    let s =
        load_smtp("smtp:\n  url: \"smtps://me@smtp.example.com\"\n  password_env: MY_SMTP_PW\n");
    assert_eq!(s.password, PasswordSource::Env("MY_SMTP_PW".into()));
    let jd = JobDir::new();
    let s = load_smtp_in(
        &jd,
        "smtp:\n  host: smtp.example.com\n  security: starttls\n  username: me\n  password_file: pw.txt\n",
    );
    assert_eq!(s.port, 587);
    // Relative to the job's folder, not the test's working directory.
    assert_eq!(s.password, PasswordSource::File(jd.dir.join("pw.txt")));
    let s = load_smtp(
        "smtp:\n  host: smtp.example.com\n  username: me\n  password_command: \"pass show smtp\"\n",
    );
    assert_eq!(s.password, PasswordSource::Command("pass show smtp".into()));

    // An unknown scheme is a clear error at the url key.
    let jd = JobDir::new();
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&format!(
        "smtp:\n  url: \"http://x.example\"\n{}",
        super::simple_job("")
    ));
    let r = jd.run(&["check", "job.yaml"]);
    r.expect_code(65);
    assert!(r.stderr.contains("job.yaml:2"), "{}", r.stderr);
}
