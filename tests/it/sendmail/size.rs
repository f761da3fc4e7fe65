//! `max_message_size`: sendmail refuses a larger message with EX_DATAERR
//! (65) and reads no further than the limit, so its memory stays bounded
//! however much a caller pipes in.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{one, setup};
use crate::support::cmd::mailshot_bin;
use crate::support::fault::FaultServer;
use crate::support::TestDir;

/// What one `mailshot sendmail a@y.example` run did with a piped message.
struct Run {
    code: i32,
    stderr: String,
    /// Bytes the process took from the pipe before it closed its end.
    accepted: u64,
    /// Peak resident set size, in bytes.
    peak_rss: u64,
}

/// Pipe `total` bytes of message (a header, then text lines) into
/// `mailshot sendmail a@y.example` in `dir`, stopping early when the
/// process closes its stdin; measure its peak memory with wait4.
// The child is reaped by wait4 below (for its resource usage), not by wait.
#[allow(clippy::zombie_processes)]
fn pipe_message(dir: &TestDir, total: u64) -> Run {
    let mut child = Command::new(mailshot_bin())
        .args(["sendmail", "a@y.example"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("MAILSHOT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailshot");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let head = b"From: me@x.example\nSubject: big\n\n";
        let line = [b"0123456789abcdef".repeat(4).as_slice(), b"\n"].concat();
        let chunk = line.repeat(1024);
        let mut accepted = 0u64;
        if stdin.write_all(head).is_err() {
            return accepted;
        }
        accepted += head.len() as u64;
        while accepted < total {
            let n = chunk.len().min((total - accepted) as usize);
            // A write fails (EPIPE) once the reader has gone.
            match stdin.write(&chunk[..n]) {
                Ok(k) => accepted += k as u64,
                Err(_) => break,
            }
        }
        accepted
    });
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: plain wait4 on our own child, into local out-parameters.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, usage);
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailshot sendmail did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let accepted = writer.join().unwrap();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Run {
        code,
        stderr: reader.join().unwrap(),
        accepted,
        // ru_maxrss is in KiB on Linux.
        peak_rss: usage.ru_maxrss as u64 * 1024,
    }
}

#[test]
fn a_message_over_max_message_size_is_refused_without_reading_it_all() {
    const CAP: u64 = 4_000_000;
    const MIB: u64 = 1 << 20;
    let server = FaultServer::start();
    let dir = setup(server.port());
    let config = dir.read("xdg/mailshot/config.yaml");
    dir.write(
        "xdg/mailshot/config.yaml",
        format!("{config}max_message_size: 4MB\n"),
    );

    // Under the limit: sent whole; its peak memory is the baseline.
    let small = pipe_message(&dir, CAP - 100_000);
    assert_eq!(small.code, 0, "{}", small.stderr);
    let sent = one(server.messages());
    assert!(
        sent.data.len() as u64 > CAP - 100_000,
        "{}",
        sent.data.len()
    );

    // Thirty times the limit, streamed: refused with EX_DATAERR, nothing
    // sent, and neither the pipe nor memory went far past the limit.
    let big = pipe_message(&dir, 30 * CAP);
    assert_eq!(big.code, 65, "{}", big.stderr);
    assert!(
        big.stderr.contains("larger than max_message_size"),
        "{}",
        big.stderr
    );
    assert_eq!(server.messages().len(), 1, "only the small one was sent");
    assert!(
        big.accepted < CAP + 2 * MIB,
        "read {} bytes of a message capped at {CAP}",
        big.accepted
    );
    assert!(
        big.peak_rss < small.peak_rss + 3 * CAP + 16 * MIB,
        "peak memory {} MiB for a message capped at {} MiB (baseline {} MiB)",
        big.peak_rss / MIB,
        CAP / MIB,
        small.peak_rss / MIB
    );
}

#[test]
fn a_bad_max_message_size_points_at_its_line() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let config = dir.read("xdg/mailshot/config.yaml");
    dir.write(
        "xdg/mailshot/config.yaml",
        format!("{config}max_message_size: lots\n"),
    );
    let bad = pipe_message(&dir, 1000);
    assert_eq!(bad.code, 65, "{}", bad.stderr);
    assert!(bad.stderr.contains("max_message_size"), "{}", bad.stderr);
    assert!(
        bad.stderr.contains(":6"),
        "points at the line: {}",
        bad.stderr
    );
    assert!(server.messages().is_empty());
}
