//! Run: what the user watches while a job sends.
//!
//! On a terminal an indicatif bar (sent / failed / remaining, msgs/s, ETA,
//! sessions); when stderr is not a terminal, a plain status line every couple
//! of seconds with no escape codes, so logs and CI output stay readable; with
//! `--json`, one JSON object per line on stdout per recipient outcome and a
//! closing summary object (JSON Lines), for scripts; with `--quiet`, nothing.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::delivery::outcome::{one_line, Outcome, Status};
use crate::delivery::report::Summary;
use crate::smtp::known_replies::explain_parts;

/// The outcome of one recipient, as shown to the user.
pub type OutcomeEvent = Outcome;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An indicatif bar on stderr.
    Bar,
    /// A plain status line on stderr every [`PLAIN_INTERVAL`], and at the end.
    Plain,
    /// JSON Lines events on stdout.
    Json,
    /// Nothing at all.
    Quiet,
}

impl Mode {
    /// The mode the command line asks for: `--json` wins (its output is for
    /// programs), then `--quiet`, then a bar if stderr is a terminal.
    pub fn choose(quiet: bool, json: bool) -> Mode {
        if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// How often [`Mode::Plain`] prints a status line.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

struct State {
    sink: Option<Box<dyn Write + Send>>,
    /// Outcomes per status, indexed like [`Status::ALL`].
    counts: [u64; Status::ALL.len()],
    sessions: usize,
    started: Instant,
    last_line: Option<Instant>,
    interval: Duration,
}

impl State {
    fn done(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn count(&self, status: Status) -> u64 {
        self.counts[status as usize]
    }

    /// `(word, count)` per status in the summary's words and order: `sent`
    /// and `failed` always, the others once they occur.
    fn tallies(&self) -> Vec<(&'static str, u64)> {
        Status::ALL
            .iter()
            .map(|&s| (s.as_str(), self.count(s)))
            .filter(|&(word, n)| n > 0 || word == "sent" || word == "failed")
            .collect()
    }

    fn status_line(&self, total: Option<u64>) -> String {
        let done = self.done();
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let mut line = match total {
            Some(total) => format!("{done}/{total} done"),
            None => format!("{done} done"),
        };
        let tallies: Vec<String> = self
            .tallies()
            .iter()
            .map(|(word, n)| format!("{n} {word}"))
            .collect();
        line.push_str(": ");
        line.push_str(&tallies.join(", "));
        if let Some(total) = total {
            let left = total.saturating_sub(done);
            line.push_str(&format!(", {left} remaining"));
            if rate > 0.0 && left > 0 {
                line.push_str(&format!(", ETA {}", eta(left as f64 / rate)));
            }
        }
        line.push_str(&format!(
            ", {rate:.1} msg/s, {} session{} active",
            self.sessions,
            if self.sessions == 1 { "" } else { "s" }
        ));
        line
    }

    fn write_line(&mut self, line: &str) {
        if let Some(sink) = &mut self.sink {
            // Progress is best effort: a closed stdout/stderr must not stop sending.
            let _ = writeln!(sink, "{line}").and_then(|()| sink.flush());
        }
    }
}

fn eta(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The progress display. Thread-safe: every method takes `&self`.
pub struct Progress {
    mode: Mode,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

impl Progress {
    /// Progress for `total` recipients (if known): Plain and Bar draw on
    /// stderr, Json writes to stdout.
    pub fn new(mode: Mode, total: Option<u64>) -> Progress {
        let sink: Option<Box<dyn Write + Send>> = match mode {
            Mode::Plain => Some(Box::new(io::stderr())),
            Mode::Json => Some(Box::new(io::stdout())),
            Mode::Bar | Mode::Quiet => None,
        };
        Progress::build(mode, total, sink)
    }

    /// Progress writing Plain or Json output to `sink` instead (for tests and
    /// embedding). Bar still draws on stderr; Quiet ignores the sink.
    pub fn with_sink(mode: Mode, total: Option<u64>, sink: Box<dyn Write + Send>) -> Progress {
        let sink = match mode {
            Mode::Plain | Mode::Json => Some(sink),
            Mode::Bar | Mode::Quiet => None,
        };
        Progress::build(mode, total, sink)
    }

    /// Change how often Plain mode prints (default [`PLAIN_INTERVAL`]).
    pub fn with_interval(self, interval: Duration) -> Progress {
        self.lock().interval = interval;
        self
    }

    fn build(mode: Mode, total: Option<u64>, sink: Option<Box<dyn Write + Send>>) -> Progress {
        let bar = (mode == Mode::Bar).then(|| make_bar(total));
        Progress {
            mode,
            total,
            bar,
            state: Mutex::new(State {
                sink,
                counts: [0; Status::ALL.len()],
                sessions: 0,
                started: Instant::now(),
                last_line: None,
                interval: PLAIN_INTERVAL,
            }),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One recipient's outcome.
    pub fn outcome(&self, event: &OutcomeEvent) {
        let mut state = self.lock();
        state.counts[event.status as usize] += 1;
        match self.mode {
            Mode::Json => {
                // A known provider reply is explained next to the server's text.
                let known = (event.status != Status::Sent)
                    .then(|| explain_parts(event.code, event.enhanced.as_deref(), &event.reply))
                    .flatten();
                let line = serde_json::json!({
                    "event": "outcome",
                    "row": event.row,
                    "email": event.email,
                    "status": event.status.as_str(),
                    "code": event.code,
                    "enhanced": event.enhanced,
                    "reply": one_line(&event.reply),
                    "meaning": known.map(|k| k.meaning.as_str()),
                    "explanation": known.map(|k| k.explanation),
                    "message_id": event.message_id,
                    "attempts": event.attempts,
                });
                let mut line = line;
                if let Some(relay) = &event.relay {
                    line["relay"] = relay.as_str().into();
                }
                state.write_line(&line.to_string());
            }
            Mode::Plain => self.plain_tick(&mut state, false),
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(bar_message(&state, self.total));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// How many SMTP sessions are connected now.
    pub fn sessions_active(&self, n: usize) {
        let mut state = self.lock();
        state.sessions = n;
        if let Some(bar) = &self.bar {
            bar.set_message(bar_message(&state, self.total));
        }
    }

    /// A message for the user (a reconnect, a warning) that must not garble
    /// the bar: above the bar, as a plain line, or on stderr in JSON mode
    /// (stdout carries only events). Quiet mode drops it.
    pub fn note(&self, text: &str) {
        // Server text can carry escape sequences; never pass them to a terminal.
        let text = one_line(text);
        match self.mode {
            Mode::Bar => match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("mailshot: {text}")),
                None => eprintln!("mailshot: {text}"),
            },
            Mode::Plain => self.lock().write_line(&format!("mailshot: {text}")),
            Mode::Json => eprintln!("mailshot: {text}"),
            Mode::Quiet => {}
        }
    }

    /// Give Plain mode a chance to print while no outcomes arrive (e.g. while
    /// waiting on a slow server); cheap to call often.
    pub fn tick(&self) {
        if self.mode == Mode::Plain {
            let mut state = self.lock();
            self.plain_tick(&mut state, false);
        }
    }

    fn plain_tick(&self, state: &mut State, force: bool) {
        let due = match state.last_line {
            None => state.started.elapsed() >= state.interval,
            Some(last) => last.elapsed() >= state.interval,
        };
        if force || due {
            let line = format!("mailshot: {}", state.status_line(self.total));
            state.write_line(&line);
            state.last_line = Some(Instant::now());
        }
    }

    /// The run is over: clear the bar and show the summary (stderr text, or
    /// the JSON summary event on stdout).
    pub fn finish(&self, summary: &Summary) {
        self.finish_with(summary, summary.exit_code());
    }

    /// [`Progress::finish`] for a run that exits with `code`, which the JSON
    /// summary's `exit_code` then states: it must equal the process's exit
    /// status, which also reflects what the outcomes alone do not show (an
    /// interruption, an authentication failure, a journal that cannot be
    /// written).
    pub fn finish_with(&self, summary: &Summary, code: crate::error::ExitCode) {
        let mut state = self.lock();
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
                eprint!("{summary}");
            }
            Mode::Plain => {
                self.plain_tick(&mut state, true);
                let text = summary.to_string();
                state.write_line(text.trim_end());
            }
            Mode::Json => {
                let mut json = summary.to_json();
                json["exit_code"] = (code as i32).into();
                state.write_line(&json.to_string());
            }
            Mode::Quiet => {}
        }
    }
}

fn make_bar(total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            "{bar:24.cyan/blue} {pos}/{len} {msg}  {rate}  ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {pos} done {msg}  {rate}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        // "12.3 msg/s" rather than indicatif's unit-less "12.3456/s".
        let style = style.with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} msg/s", s.per_sec());
            },
        );
        bar.set_style(style.progress_chars("=> "));
    }
    // Redraw while waiting on a slow server so the rate and ETA stay honest.
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn bar_message(state: &State, total: Option<u64>) -> String {
    let mut msg = state
        .tallies()
        .iter()
        .map(|(word, n)| format!("{word} {n}"))
        .collect::<Vec<_>>()
        .join("  ");
    if let Some(total) = total {
        msg.push_str(&format!(
            "  remaining {}",
            total.saturating_sub(state.done())
        ));
    }
    msg.push_str(&format!("  sessions {}", state.sessions));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session threads share it in an `Arc`.
    const _: fn() = || {
        fn shared<T: Send + Sync>() {}
        shared::<Progress>();
    };
    use std::sync::Arc;

    /// A sink the test can read after handing a clone to `Progress`.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn event(row: u64, status: Status, code: Option<u16>) -> Outcome {
        Outcome {
            row,
            email: format!("u{row}@example.org"),
            status,
            code,
            enhanced: None,
            reply: format!("reply {row}"),
            message_id: Some(format!("<{row}@run>")),
            attempts: 2,
            relay: None,
        }
    }

    /// Sent, rejected, failed, uncertain, skipped; none suppressed.
    fn summary(five: [u64; 5]) -> Summary {
        let mut counts = [0; Status::ALL.len()];
        counts[..5].copy_from_slice(&five);
        Summary {
            counts,
            this_run: counts.iter().sum(),
            previous: 0,
            failures: vec![("550 5.1.1 unknown user".into(), 1, None)],
            elapsed: Duration::from_secs(1),
            report: Some("job.report.csv".into()),
            journal: Some("job.journal".into()),
            retry_left: 0,
        }
    }

    #[test]
    fn plain_lines_carry_the_counts_and_no_escape_codes() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Plain, Some(4), Box::new(out.clone()))
            .with_interval(Duration::ZERO);
        p.sessions_active(2);
        p.note("connected to\x1b[31m smtp.example.org");
        p.outcome(&event(1, Status::Sent, Some(250)));
        p.outcome(&event(2, Status::Rejected, Some(550)));
        p.outcome(&event(3, Status::Sent, Some(250)));
        p.finish(&summary([2, 1, 0, 0, 0]));
        let text = out.text();
        assert!(!text.contains('\x1b'), "escape code in {text:?}");
        assert!(!text.contains('\r'), "carriage return in {text:?}");
        let mut lines: Vec<&str> = text.lines().collect();
        // ESC becomes a space; the printable rest of the sequence is harmless.
        assert_eq!(
            lines.remove(0),
            "mailshot: connected to [31m smtp.example.org"
        );
        assert!(lines[0].starts_with("mailshot: 1/4 done: 1 sent, 0 failed, 3 remaining"));
        assert!(lines[0].contains("2 sessions active"), "{}", lines[0]);
        // The last outcome line and the forced final line both say 3/4; a
        // rejection is called what the summary calls it.
        assert!(
            lines[2].starts_with("mailshot: 3/4 done: 2 sent, 1 rejected, 0 failed, 1 remaining"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("mailshot: 3/4 done"));
        assert!(text.contains("report: job.report.csv"));
    }

    #[test]
    fn plain_mode_waits_for_the_interval() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Plain, None, Box::new(out.clone()))
            .with_interval(Duration::from_secs(3600));
        for row in 1..=50 {
            p.outcome(&event(row, Status::Sent, Some(250)));
            p.tick();
        }
        assert_eq!(out.text(), "", "nothing before the interval passes");
        p.finish(&summary([50, 0, 0, 0, 0]));
        assert!(out
            .text()
            .starts_with("mailshot: 50 done: 50 sent, 0 failed, "));
    }

    #[test]
    fn json_mode_writes_one_parseable_event_per_outcome_and_a_summary() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Json, Some(2), Box::new(out.clone()));
        p.outcome(&event(2, Status::Sent, Some(250)));
        p.outcome(&event(1, Status::Uncertain, None));
        p.finish(&summary([1, 0, 0, 1, 0]));
        let events: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["event"], "outcome");
        assert_eq!(events[0]["row"], 2);
        assert_eq!(events[0]["email"], "u2@example.org");
        assert_eq!(events[0]["status"], "sent");
        assert_eq!(events[0]["code"], 250);
        assert_eq!(events[0]["reply"], "reply 2");
        assert_eq!(events[0]["attempts"], 2);
        assert_eq!(events[1]["status"], "uncertain");
        assert!(events[1]["code"].is_null());
        assert_eq!(events[2]["event"], "summary");
        assert_eq!(events[2]["sent"], 1);
        assert_eq!(events[2]["uncertain"], 1);
        assert_eq!(events[2]["report"], "job.report.csv");
    }

    #[test]
    fn a_json_event_explains_a_known_provider_reply() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Json, Some(2), Box::new(out.clone()));
        let mut spam = event(1, Status::Rejected, Some(554));
        spam.reply = "DT:SPM 163 smtp14,EsCowAD3 please see help_spam_16.htm".into();
        p.outcome(&spam);
        p.outcome(&event(2, Status::Rejected, Some(550)));
        let events: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            events[0]["reply"], spam.reply,
            "the server's own text stays"
        );
        assert_eq!(events[0]["meaning"], "content");
        assert_eq!(
            events[0]["explanation"],
            "content flagged as spam: change the content, retrying will not help"
        );
        assert!(events[1]["explanation"].is_null());
        assert!(events[1]["meaning"].is_null());
    }

    #[test]
    fn the_json_summary_carries_the_exit_code_of_the_process() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Json, Some(2), Box::new(out.clone()));
        // The outcomes alone call for 75; the run ends with 77 (authentication).
        p.finish_with(&summary([0, 0, 2, 0, 0]), crate::error::ExitCode::NoPerm);
        let event: serde_json::Value = serde_json::from_str(out.text().trim()).unwrap();
        assert_eq!(event["exit_code"], 77);
    }

    #[test]
    fn the_bar_uses_the_summarys_words() {
        let p = Progress::with_sink(Mode::Quiet, Some(5), Box::new(io::sink()));
        for (row, status) in [
            (1, Status::Sent),
            (2, Status::Rejected),
            (3, Status::Uncertain),
        ] {
            p.outcome(&event(row, status, None));
        }
        let msg = bar_message(&p.lock(), Some(5));
        assert!(
            msg.starts_with("sent 1  rejected 1  failed 0  uncertain 1  remaining 2"),
            "{msg}"
        );
    }

    #[test]
    fn quiet_mode_says_nothing() {
        let out = Captured::default();
        let p = Progress::with_sink(Mode::Quiet, Some(1), Box::new(out.clone()))
            .with_interval(Duration::ZERO);
        p.outcome(&event(1, Status::Failed, Some(451)));
        p.finish(&summary([0, 0, 1, 0, 0]));
        assert_eq!(out.text(), "");
    }

    #[test]
    fn json_wins_over_quiet() {
        assert_eq!(Mode::choose(true, true), Mode::Json);
        assert_eq!(Mode::choose(true, false), Mode::Quiet);
    }

    #[test]
    fn eta_is_human_sized() {
        assert_eq!(eta(42.4), "42s");
        assert_eq!(eta(125.0), "2m05s");
        assert_eq!(eta(7260.0), "2h01m");
    }
}
