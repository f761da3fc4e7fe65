//! The one way the tests run the built `mailshot`: a [`Mailshot`] builder
//! (working folder, arguments, environment, stdin, a time limit) that either
//! runs the program to its end and returns an [`Output`], or starts it in the
//! background for tests that signal it.
//!
//! Every run is isolated from the developer's own configuration: `HOME` is the
//! working folder and `XDG_CONFIG_HOME` is `xdg/` inside it (tests that want a
//! user config write `xdg/mailshot/config.yaml`), and `MAILSHOT_PASSWORD` and
//! `SOURCE_DATE_EPOCH` are not inherited. A run that outlives its limit is
//! killed and fails the test; a run whose stderr shows a Rust panic fails too.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestDir;

/// The `mailshot` binary Cargo built for this test run.
pub fn mailshot_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailshot"))
}

/// How long a run may take unless the test says otherwise.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A `mailshot` invocation being put together.
pub struct Mailshot {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    limit: Duration,
    /// A private config folder, kept alive for as long as the run.
    config: Option<TestDir>,
}

/// `mailshot ARGS` in `cwd`, isolated as the module header says.
pub fn mailshot<S: AsRef<OsStr>>(cwd: &Path, args: impl IntoIterator<Item = S>) -> Mailshot {
    Mailshot::new(cwd).args(args)
}

impl Mailshot {
    /// `mailshot` with no arguments yet, in `cwd`.
    pub fn new(cwd: &Path) -> Self {
        let mut cmd = Command::new(mailshot_bin());
        cmd.current_dir(cwd)
            .env("HOME", cwd)
            .env("XDG_CONFIG_HOME", cwd.join("xdg"))
            .env_remove("MAILSHOT_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH");
        Mailshot {
            cmd,
            stdin: None,
            limit: RUN_LIMIT,
            config: None,
        }
    }

    /// Adds arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd.args(args);
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Sets several environment variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self.cmd.env(k, v);
        }
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// `HOME` and `XDG_CONFIG_HOME` in a fresh folder outside the working one,
    /// so nothing the program might write there shows up in the job's folder.
    pub fn private_config(mut self) -> Self {
        let config = TestDir::new();
        self.cmd
            .env("HOME", config.path())
            .env("XDG_CONFIG_HOME", config.path());
        self.config = Some(config);
        self
    }

    /// Feeds `bytes` to stdin (otherwise stdin is empty).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kills the run and fails the test after `limit` instead of [`RUN_LIMIT`].
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The command as built, for a test that wraps or drives it itself.
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Starts the program with stdout and stderr piped.
    pub fn spawn(mut self) -> Running {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.cmd.spawn().expect("start mailshot");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        Running {
            child,
            started,
            limit: self.limit,
            _config: self.config,
        }
    }

    /// Runs the program to its end (bounded by the limit).
    pub fn run(self) -> Output {
        self.spawn().finish()
    }
}

/// A `mailshot` started in the background.
pub struct Running {
    /// The process (for its id, or to kill it).
    pub child: Child,
    started: Instant,
    limit: Duration,
    _config: Option<TestDir>,
}

impl Running {
    /// How long the run may take (instead of [`RUN_LIMIT`]).
    pub fn within(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Sends `signal` ("INT", "TERM", "HUP", "KILL", ...) to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits for the end (killing the process and failing the test after the
    /// builder's limit) and collects what it printed.
    pub fn finish(self) -> Output {
        let limit = self.limit;
        self.finish_within(limit)
    }

    /// Waits at most `limit` from now for the end (then kills the process and
    /// fails the test) and collects what it printed.
    pub fn finish_within(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let mut out = self.child.stdout.take().expect("stdout pipe");
        let mut err = self.child.stderr.take().expect("stderr pipe");
        let t_out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for mailshot") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
                panic!("mailshot did not finish within {limit:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        let raw_stdout = t_out.join().unwrap();
        let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
        assert!(!stderr.contains("panicked"), "mailshot panicked:\n{stderr}");
        Output {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&raw_stdout).into_owned(),
            raw_stdout,
            stderr,
            elapsed,
        }
    }
}

/// Starts a command the test built itself around the binary (under
/// `unshare`, say) with stdout and stderr piped, bounded by [`RUN_LIMIT`].
pub fn spawn_command(mut cmd: Command) -> Running {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    Running {
        child: cmd.spawn().expect("start mailshot"),
        started: Instant::now(),
        limit: RUN_LIMIT,
        _config: None,
    }
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`-1` if a signal ended the process).
    pub code: i32,
    /// Standard output as text (lossy).
    pub stdout: String,
    /// Standard output as bytes (preview prints message bytes).
    pub raw_stdout: Vec<u8>,
    /// Standard error as text.
    pub stderr: String,
    /// From start to exit.
    pub elapsed: Duration,
}

impl Output {
    /// Panics with the whole run shown unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
}

/// Sends `signal` (e.g. "INT", "TERM", "KILL") to process `pid`, which the test started.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}
