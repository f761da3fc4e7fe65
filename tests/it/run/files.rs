//! The files a run writes: journal, report and outbox messages are private
//! (mode 0600); a symbolic link at the journal is not followed; a read-only
//! folder exits 73 and a full disk 74, each naming the file and the reason;
//! a journal cut short or deleted is refused, never silently resent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::helpers::*;
use crate::support::cmd::{mailshot, mailshot_bin, spawn_command};
use crate::support::fault::FaultServer;
use crate::support::{files_with_suffix, TestDir};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `sh -c script` in a private mount namespace (for tmpfs mounts that
/// vanish with it); `args` are `$1`, `$2`, ...
fn in_mount_namespace(script: &str, args: &[&Path]) -> Output {
    let probe = Command::new("unshare").args(["-m", "true"]).status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        panic!("this test needs `unshare -m` (root or CAP_SYS_ADMIN)");
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .args(args)
        .env("HOME", args[0])
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null());
    spawn_command(cmd).finish()
}

/// A job folder (`job.yaml` naming its CSV and template by absolute path,
/// so it can be copied anywhere) for `n` rows sent to `port`.
fn portable_job(port: u16, n: usize) -> TestDir {
    let dir = TestDir::new();
    dir.write("recipients.csv", csv_rows(n));
    let body = dir.write("body.txt", "Dear {{ name }}\n");
    dir.write(
        "job.yaml",
        format!(
            "smtp: {}\nfrom: sender@example.test\nsubject: Hi\ntext: {}\nrecipients: {{ file: {} }}\n",
            smtp_plain(port, "sessions: 1"),
            body.display(),
            dir.join("recipients.csv").display()
        ),
    );
    dir
}

#[test]
fn journal_report_and_outbox_files_are_private() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for name in ["job.journal", "job.report.csv"] {
        assert_eq!(mode(&job.dir.join(name)), 0o600, "{name}");
    }

    // --dry-run's messages.
    let out = job.run(&["--dry-run", "--out", "eml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let emls = files_with_suffix(&job.dir.join("eml"), ".eml");
    assert_eq!(emls.len(), 3);
    for eml in &emls {
        assert_eq!(mode(eml), 0o600, "{}", eml.display());
    }

    // The built-in capture server's outbox (no smtp: anywhere).
    let rehearsal = TestDir::new();
    rehearsal.write("recipients.csv", csv_rows(2));
    rehearsal.write("body.txt", "Hi {{ name }}\n");
    rehearsal.write(
        "job.yaml",
        "from: sender@example.test\nsubject: Hi\ntext: body.txt\nrecipients: { file: recipients.csv }\n",
    );
    let out = mailshot(rehearsal.path(), ["run", "job.yaml"])
        .env_remove("XDG_CONFIG_HOME")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let emls = files_with_suffix(&rehearsal.join("outbox"), ".eml");
    assert_eq!(emls.len(), 2, "{}", out.stderr);
    for eml in &emls {
        assert_eq!(mode(eml), 0o600, "{}", eml.display());
    }
}

#[test]
fn a_symlink_at_the_journal_is_not_followed() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 2);
    // An earlier run left a journal (and its seal); then a link replaced it.
    assert_eq!(job.run(&[]).code, 0);
    std::fs::remove_file(job.dir.join("job.journal")).unwrap();
    let victim = job.dir.write("victim.txt", "precious\n");
    std::os::unix::fs::symlink(&victim, job.dir.join("job.journal")).unwrap();
    let out = job.run(&[]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("job.journal") && out.stderr.contains("symbolic link"),
        "{}",
        out.stderr
    );
    assert_eq!(job.dir.read("victim.txt"), "precious\n");
    assert_each_once(&server, 2);
    // --restart does not follow it either.
    let out = job.run(&["--restart"]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert_eq!(job.dir.read("victim.txt"), "precious\n");
    assert_each_once(&server, 2);
}

#[test]
fn a_read_only_folder_exits_73_naming_the_file() {
    let server = FaultServer::start();
    let job = portable_job(server.port(), 3);
    let ro = job.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let bin = mailshot_bin();

    // The job's own folder is read-only: the journal cannot be created.
    let script = r#"mount -t tmpfs tmpfs "$2" && cp "$1/job.yaml" "$2/" && mount -o remount,ro "$2" && cd "$2" && exec "$3" run job.yaml"#;
    let out = in_mount_namespace(script, &[job.path(), &ro, &bin]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("journal") && out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );

    // Only the report's folder is read-only.
    let script = r#"mount -t tmpfs -o ro tmpfs "$2" && cd "$1" && exec "$3" run job.yaml --restart --report "$2/report.csv""#;
    let out = in_mount_namespace(script, &[job.path(), &ro, &bin]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("report") && out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );

    // --dry-run into a read-only outbox.
    let script = r#"mount -t tmpfs -o ro tmpfs "$2" && cd "$1" && exec "$3" run job.yaml --dry-run --out "$2/eml""#;
    let out = in_mount_namespace(script, &[job.path(), &ro, &bin]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(server.messages().is_empty(), "nothing sent");

    // The built-in capture server's outbox is read-only.
    let rehearsal = TestDir::new();
    rehearsal.write("recipients.csv", csv_rows(2));
    rehearsal.write("body.txt", "Hi {{ name }}\n");
    rehearsal.write(
        "job.yaml",
        "from: sender@example.test\nsubject: Hi\ntext: body.txt\nrecipients: { file: recipients.csv }\n",
    );
    let outbox = rehearsal.join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    let script = r#"mount -t tmpfs -o ro tmpfs "$2" && cd "$1" && exec "$3" run job.yaml"#;
    let out = in_mount_namespace(script, &[rehearsal.path(), &outbox, &bin]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.contains("outbox") && out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_full_disk_exits_74_and_says_which_file_and_why() {
    let server = FaultServer::start();
    let n = 300;
    let job = portable_job(server.port(), n);
    let mnt = job.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let bin = mailshot_bin();

    // The journal fills a 48 KiB tmpfs part way through the run.
    let script = r#"mount -t tmpfs -o size=48k tmpfs "$2" && cp "$1/job.yaml" "$2/" && cd "$2" && exec "$3" run job.yaml --json --report "$1/report.csv""#;
    let out = in_mount_namespace(script, &[job.path(), &mnt, &bin]);
    assert_eq!(out.code, 74, "{}", out.stderr);
    let summary = json_summary(&out.stdout);
    assert_eq!(
        summary["exit_code"], 74,
        "the summary says what the exit says"
    );
    assert!(
        out.stderr.contains("journal") && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("earlier write"),
        "the reason, not a consequence: {}",
        out.stderr
    );
    let sent = server.messages().len();
    assert!(sent < n, "sending stopped");

    // The report fills a one-page tmpfs while the journal is fine.
    let script = r#"mount -t tmpfs -o size=4k tmpfs "$2" && cd "$1" && exec "$3" run job.yaml --restart --report "$2/report.csv""#;
    let out = in_mount_namespace(script, &[job.path(), &mnt, &bin]);
    assert_eq!(out.code, 74, "{}", out.stderr);
    assert!(
        out.stderr.contains("report") && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_journal_cut_short_is_refused_and_nothing_is_resent() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 5);
    assert_eq!(job.run(&[]).code, 0);
    assert_each_once(&server, 5);
    let path = job.dir.join("job.journal");
    let text = std::fs::read(&path).unwrap();
    // Cut at a line boundary, as a careless copy or a bad restore would:
    // every remaining line is whole and valid.
    let lines: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert!(lines.len() > 3, "a journal of several records");
    let cut = lines[lines.len() / 2];
    std::fs::write(&path, &text[..cut]).unwrap();

    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    assert!(out.stderr.contains("job.journal"), "{}", out.stderr);
    assert_each_once(&server, 5);

    // Emptied entirely: the same.
    std::fs::write(&path, b"").unwrap();
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    assert_each_once(&server, 5);
}

#[test]
fn a_missing_journal_next_to_a_report_is_refused() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 4);
    assert_eq!(job.run(&[]).code, 0);
    assert!(job.dir.join("job.report.csv").exists());

    // The journal alone deleted.
    std::fs::remove_file(job.dir.join("job.journal")).unwrap();
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    assert_each_once(&server, 4);

    // Every file of mailshot's but the report deleted.
    for f in std::fs::read_dir(job.dir.path()).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("job.journal") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(
        out.stderr.contains("--restart") && out.stderr.contains("job.report.csv"),
        "{}",
        out.stderr
    );
    assert_each_once(&server, 4);

    // --restart is the way forward, and does what it says.
    let out = job.run(&["--restart"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(deliveries(&server)[&addr(1)], 2);
}
