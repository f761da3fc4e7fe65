//! Child processes for the benchmark: run a contender to completion under a
//! deadline and collect its wall time, CPU time and peak RSS from `wait4(2)`'s
//! `struct rusage`, and keep background servers alive only as long as a guard.

use std::io;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// What one finished child cost.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Spawn to reap.
    pub wall: Duration,
    /// User plus system CPU time of the child (and of its reaped children).
    pub cpu: Duration,
    /// Peak resident set size in KiB (`ru_maxrss`, Linux reports KiB).
    pub max_rss_kb: u64,
    /// The exit code, or 128 + signal number when it was killed by a signal.
    pub code: i32,
    /// True when the deadline passed and the child was killed.
    pub timed_out: bool,
}

impl Measured {
    /// Exited by itself with status 0.
    pub fn ok(&self) -> bool {
        self.code == 0 && !self.timed_out
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}

/// Reaps `pid` with `wait4`, polling so that the deadline can be enforced
/// without a second thread racing on the pid.
fn reap(pid: libc::pid_t, deadline: Instant) -> io::Result<(libc::c_int, libc::rusage, bool)> {
    let mut timed_out = false;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if timed_out { 0 } else { libc::WNOHANG };
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            return Ok((status, usage, timed_out));
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if Instant::now() >= deadline {
            // SAFETY: the child is not reaped yet, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            timed_out = true;
            continue;
        }
        // A millisecond of polling granularity is noise next to runs of seconds.
        thread::sleep(Duration::from_millis(1));
    }
}

/// Spawns `cmd`, waits for it (killing it after `timeout`) and measures it.
pub fn run_measured(cmd: &mut Command, timeout: Duration) -> io::Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    // The std handle must not wait again: we reap the pid ourselves.
    drop(child);
    let (status, usage, timed_out) = reap(pid, start + timeout)?;
    let wall = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok(Measured {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss as u64,
        code,
        timed_out,
    })
}

/// A background child (a server) that is killed and reaped when dropped, so
/// a panicking harness leaves nothing running.
pub struct Guard {
    child: Option<Child>,
    /// A command to run on drop instead of killing (Postfix's `stop`).
    on_drop: Option<Command>,
}

impl Guard {
    /// Owns `child`.
    pub fn child(child: Child) -> Self {
        Guard {
            child: Some(child),
            on_drop: None,
        }
    }

    /// Runs `cmd` (bounded) when dropped.
    pub fn command(cmd: Command) -> Self {
        Guard {
            child: None,
            on_drop: Some(cmd),
        }
    }

    /// True while the owned child has not exited.
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut cmd) = self.on_drop.take() {
            let _ = run_measured(&mut cmd, Duration::from_secs(30));
        }
    }
}
