//! Child processes for the benchmark: run a contender to completion under a
//! deadline and collect its wall time, CPU time and peak RSS from `wait4(2)`'s
//! `struct rusage`, and keep background servers alive only as long as a guard.
//!
//! Linux counts in a child's `ru_maxrss` the memory its parent had when it
//! started it: the figure of a child of this (large) harness is at least the
//! harness's size. A command made with [`alone`] is started by a small
//! process of its own (this harness run afresh with [`MEASURE_CHILD`]), which
//! measures it and reports back, so its peak RSS is its own.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
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

/// The exit code of a wait status, or 128 + the signal that killed it.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// Spawns `cmd`, waits for it (killing it after `timeout`) and measures it.
/// A command made with [`alone`] has its CPU time and peak RSS from the
/// small process that started it.
pub fn run_measured(cmd: &mut Command, timeout: Duration) -> io::Result<Measured> {
    let report = alone_report(cmd);
    if let Some(path) = &report {
        let _ = std::fs::remove_file(path);
    }
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    // The std handle must not wait again: we reap the pid ourselves.
    drop(child);
    let (status, usage, timed_out) = reap(pid, start + timeout)?;
    let wall = start.elapsed();
    let mut measured = Measured {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss as u64,
        code: exit_code(status),
        timed_out,
    };
    if let Some((cpu, rss)) = report.and_then(|path| read_report(&path)) {
        measured.cpu = cpu;
        measured.max_rss_kb = rss;
    }
    Ok(measured)
}

/// The first argument of a command made with [`alone`].
pub const MEASURE_CHILD: &str = "--measure-child";

/// A command for `program` (add its arguments and stdio as usual) that a
/// small process of its own starts and measures: its peak RSS is then its
/// own, not the harness's. `report` is a scratch file for the figures.
pub fn alone(program: &Path, report: &Path) -> Command {
    let me = std::env::current_exe().expect("the harness's own path");
    let mut cmd = Command::new(me);
    cmd.arg(MEASURE_CHILD).arg(report).arg(program);
    cmd
}

/// The report file of a command made with [`alone`].
fn alone_report(cmd: &Command) -> Option<std::path::PathBuf> {
    let mut args = cmd.get_args();
    if args.next()? != MEASURE_CHILD {
        return None;
    }
    args.next().map(std::path::PathBuf::from)
}

/// CPU time and peak RSS (KiB) from a report file.
fn read_report(path: &Path) -> Option<(Duration, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let cpu_us = it.next()?.ok()?;
    let rss = it.next()?.ok()?;
    Some((Duration::from_micros(cpu_us), rss))
}

/// The small process of [`alone`]: `args` are the report file, the program
/// and its arguments. Runs it with this process's stdio, writes its CPU
/// microseconds and peak RSS to the report, and exits as it did. It dies
/// with this process, so the harness's deadline still holds.
pub fn measure_child(args: &[String]) -> i32 {
    let [report, program, rest @ ..] = args else {
        eprintln!("{MEASURE_CHILD}: want a report file and a program");
        return 2;
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{MEASURE_CHILD}: {program}: {e}");
            return 127;
        }
    };
    let pid = child.id() as libc::pid_t;
    drop(child);
    let far = Instant::now() + Duration::from_secs(365 * 86_400);
    let (status, usage, _) = match reap(pid, far) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{MEASURE_CHILD}: wait: {e}");
            return 125;
        }
    };
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let line = format!("{} {}\n", cpu.as_micros(), usage.ru_maxrss);
    if let Err(e) = std::fs::write(report, line) {
        eprintln!("{MEASURE_CHILD}: {report}: {e}");
        return 125;
    }
    exit_code(status)
}

/// Keeps thread `tid` (0: the calling thread) on `cpu`, or on every CPU
/// when `None`.
pub fn set_affinity(tid: libc::pid_t, cpu: Option<usize>) -> io::Result<()> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET only writes
    // inside it for indexes below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cpus.min(libc::CPU_SETSIZE as usize) {
        if cpu.is_none_or(|only| only == c) {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Keeps every thread of process `pid` on `cpu` (every CPU when `None`);
/// threads it starts later inherit that.
pub fn pin_process(pid: u32, cpu: Option<usize>) -> io::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse().ok()) {
            set_affinity(tid, cpu)?;
        }
    }
    Ok(())
}

/// Starts `cmd` on `cpu` only (and the threads and children it starts).
pub fn on_cpu(cmd: &mut Command, cpu: usize) {
    // SAFETY: the closure only makes a system call, which is
    // async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || set_affinity(0, Some(cpu)));
    }
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

    /// The owned child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
