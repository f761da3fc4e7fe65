//! The Debian package `scripts/package` builds with cargo-deb: unpacked into
//! a scratch root with `dpkg -x`, its binary runs and sends, its man page
//! renders with `man -l`, and it holds the completions, the systemd units
//! and the example system config.
//!
//! It needs a release build and cargo-deb, so it is ignored by a plain
//! `cargo test`; `scripts/test` installs cargo-deb and runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::{self, Output};
use crate::support::fault::FaultServer;
use crate::support::TestDir;

/// `program args` in `dir`, at most `limit`, with a scratch HOME.
fn run(dir: &Path, program: &Path, args: &[&str], limit: Duration) -> Output {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env_remove("MAILSHOT_PASSWORD")
        .stdin(Stdio::null());
    cmd::spawn_command(c).within(limit).finish()
}

/// Build the package; its path.
fn build_package() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    // The developer's own HOME (cargo and rustup live there), without what
    // `cargo test` adds for the test itself (LD_LIBRARY_PATH, CARGO_*): the
    // release build would otherwise be redone each time the environment
    // changes between a shell and this test.
    let mut c = Command::new(root.join("scripts/package"));
    c.current_dir(root).stdin(Stdio::null());
    c.env_remove("LD_LIBRARY_PATH").env_remove("CARGO");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            c.env_remove(key.as_ref());
        }
    }
    let out = cmd::spawn_command(c)
        .within(Duration::from_secs(20 * 60))
        .finish();
    out.expect_code(0);
    eprintln!("scripts/package took {:?}", started.elapsed());
    let deb = out
        .stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb path printed:\n{}", out.stdout));
    let deb = root.join(deb);
    assert!(deb.is_file(), "{}", deb.display());
    deb
}

#[test]
#[ignore = "builds a release package with cargo-deb; scripts/test runs it"]
fn the_debian_package_installs_a_working_mailshot() {
    let deb = build_package();
    let scratch = TestDir::new();

    // What the package holds.
    let listing = run(
        scratch.path(),
        Path::new("dpkg"),
        &["-c", deb.to_str().unwrap()],
        Duration::from_secs(60),
    );
    listing.expect_code(0);
    for path in [
        "./usr/bin/mailshot",
        "./usr/share/man/man1/mailshot.1.gz",
        "./usr/share/man/man1/mailshot-sendmail.1.gz",
        "./usr/share/bash-completion/completions/mailshot",
        "./usr/share/zsh/vendor-completions/_mailshot",
        "./usr/share/fish/vendor_completions.d/mailshot.fish",
        "./usr/lib/systemd/system/mailshot-queue.service",
        "./usr/lib/systemd/system/mailshot-queue.timer",
        "./usr/share/doc/mailshot/examples/config.yaml",
        "./etc/mailshot/config.yaml",
    ] {
        assert!(
            listing.stdout.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{}",
            listing.stdout
        );
    }

    // Unpacked into a scratch root, as dpkg would install it.
    let root = scratch.join("root");
    run(
        scratch.path(),
        Path::new("dpkg"),
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
        Duration::from_secs(60),
    )
    .expect_code(0);
    let bin = root.join("usr/bin/mailshot");

    // The system config it installs changes nothing until edited.
    let etc = std::fs::read_to_string(root.join("etc/mailshot/config.yaml")).unwrap();
    assert!(etc.contains("smtp:"), "the example is there: {etc}");
    assert!(
        etc.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "every line of /etc/mailshot/config.yaml is commented out:\n{etc}"
    );

    let version = run(
        scratch.path(),
        &bin,
        &["--version"],
        Duration::from_secs(30),
    );
    version.expect_code(0);
    assert_eq!(
        version.stdout.trim(),
        format!("mailshot {}", env!("CARGO_PKG_VERSION"))
    );

    // sendmail's flags: an unknown mode is refused; a message goes out.
    let refused = run(
        scratch.path(),
        &bin,
        &["sendmail", "-bp"],
        Duration::from_secs(30),
    );
    refused.expect_code(64);
    assert!(refused.stderr.contains("-bp"), "{}", refused.stderr);
    let server = FaultServer::start();
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    scratch.write("msg.eml", "From: cron@host.example\nSubject: s\n\nbody\n");
    let mut c = Command::new(&bin);
    c.args(["sendmail", "-t", "-i", "--smtp", &url, "admin@x.example"])
        .current_dir(scratch.path())
        .env("HOME", scratch.path())
        .env("XDG_CONFIG_HOME", scratch.join("xdg"))
        .stdin(std::fs::File::open(scratch.join("msg.eml")).unwrap());
    cmd::spawn_command(c).finish().expect_code(0);
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpts, ["admin@x.example"]);

    // The installed page renders.
    let page = root.join("usr/share/man/man1/mailshot-sendmail.1.gz");
    let man = run(
        scratch.path(),
        Path::new("man"),
        &["-l", page.to_str().unwrap()],
        Duration::from_secs(60),
    );
    man.expect_code(0);
    assert!(man.stdout.contains("NAME"), "{}", man.stdout);
    assert!(man.stdout.contains("mailshot-sendmail"), "{}", man.stdout);

    // The bash completion loads and completes mailshot.
    let bash = root.join("usr/share/bash-completion/completions/mailshot");
    let script = format!("source '{}' && complete -p mailshot", bash.display());
    let loaded = run(
        scratch.path(),
        Path::new("bash"),
        &["-c", &script],
        Duration::from_secs(30),
    );
    loaded.expect_code(0);
    assert!(loaded.stdout.contains("mailshot"), "{}", loaded.stdout);
}
