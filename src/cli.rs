//! Command-line arguments (clap derive): raw values only; `app` checks them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod sendmail;

/// mailshot — a scriptable batch mailer: YAML job + CSV recipients + minijinja
/// templates, sent over pipelined SMTP.
#[derive(Debug, Parser)]
#[command(name = "mailshot", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, as the README's "Commands" section describes them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send the job (validates every row first; nothing is sent if any row fails).
    Run(RunArgs),
    /// Validate the job, CSV, templates, addresses and attachments for every row; no network.
    Check(CheckArgs),
    /// Print the raw RFC 5322 message for one row to stdout.
    Preview(PreviewArgs),
    /// Send one message, mailx-style; the body comes from stdin.
    Send(SendArgs),
    /// Run a local capture SMTP server that stores each message as DIR/*.eml.
    Capture(CaptureArgs),
    /// Submit one RFC 5322 message from stdin, as sendmail(8) does
    /// (`-t`, `-i`, `-f ADDR`, `-F NAME`, recipients).
    ///
    /// Also runs this way when the binary is invoked under the name
    /// `sendmail`. Flags: -t (recipients from To, Cc and Bcc, plus the
    /// arguments), -i and -oi (a lone dot is text), -f ADDR / -r ADDR (envelope
    /// sender), -F NAME (name of an added From), -a NAME (account), -v (SMTP conversation on
    /// stderr), --smtp URL. Accepted and ignored: -bm, -U, -o*, -B, -N, -R,
    /// -X, -L, -h, -V. Others are refused with exit 64. Exit 75 means the
    /// message could not go out now; the caller keeps it.
    #[command(disable_help_flag = true)]
    Sendmail(SendmailRaw),
    /// Work on the config: `mailshot config import-mailrc [FILE]`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List or deliver the sendmail queue (`queue:` in the config).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Print the man page or shell completions, for packagers.
    #[command(subcommand)]
    Generate(Generate),
    /// Rebuild JOB.report.html and JOB.retry.csv from the job's report and journal; sends nothing.
    Report(ReportArgs),
    /// Read the job's bounce mailbox: classify new mail, write JOB.bounces.csv, extend the suppression list.
    Bounces(BouncesArgs),
}

/// `mailshot config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Turn an s-nail/mailx mail.rc (default ~/.mailrc) into a mailshot
    /// config; a plain-text password goes to a 0600 password file.
    ImportMailrc {
        /// The mail.rc to read.
        file: Option<PathBuf>,
        /// The config to write (default: the user config); never overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `mailshot queue`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// One line per queued message: id, attempts, next try, sender, recipients, last error.
    List,
    /// Deliver the queued messages now.
    Flush {
        /// Only those whose backoff has passed (for a timer).
        #[arg(long)]
        due: bool,
        /// Write the SMTP conversation to FILE or `-`.
        #[arg(long, value_name = "FILE|-")]
        trace: Option<String>,
    },
}

/// `mailshot generate`: what a package installs next to the binary.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// The man page (roff), e.g. `mailshot generate man > mailshot.1`.
    Man {
        /// Write every page (mailshot.1 and one mailshot-COMMAND.1 per
        /// command) into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `mailshot sendmail`: the arguments as given; `cli::sendmail` parses them
/// the way sendmail(8) callers write them.
#[derive(Debug, Args)]
pub struct SendmailRaw {
    /// Flags and recipients.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// `mailshot report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// The report CSV the run wrote (default: JOB.report.csv next to the job).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Say nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `mailshot bounces`.
#[derive(Debug, Args)]
pub struct BouncesArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Classify and print; write nothing, delete or move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The job's report CSV, to match bounces to rows (default: JOB.report.csv next to the job).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the mailbox conversation to FILE, or `-` for stderr (secrets redacted).
    #[arg(long, value_name = "FILE|-")]
    pub trace: Option<String>,
}

/// Options shared by the commands that read a job.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file (YAML).
    pub job: PathBuf,
    /// Add KEY=VALUE to the job's `vars` (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
}

/// `mailshot run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Render every message into --out DIR instead of sending.
    #[arg(long)]
    pub dry_run: bool,
    /// Output folder for --dry-run (one ROW.eml per recipient).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only the first N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Parallel SMTP sessions, at most 100 (overrides smtp.sessions).
    #[arg(long, value_name = "N")]
    pub sessions: Option<usize>,
    /// Rate limit across sessions, e.g. 20/s, 300/min, 1000/h.
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Write the SMTP conversation to FILE, or `-` for stderr (secrets redacted).
    #[arg(long, value_name = "FILE|-")]
    pub trace: Option<String>,
    /// The report CSV (default: JOB.report.csv next to the job).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Forget the journal of an earlier run and start from scratch.
    #[arg(long)]
    pub restart: bool,
    /// Resend messages whose outcome is unknown (same Message-ID).
    #[arg(long)]
    pub resend_uncertain: bool,
    /// Send only shard I of N (0-based), with its own journal and report.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// One JSON event per line on stdout instead of the progress bar.
    #[arg(long)]
    pub json: bool,
    /// SMTP server URL, overriding the job and the user config.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// Render on N threads (default: every core this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// `mailshot check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Also open the SMTP session (TLS, AUTH) and quit.
    #[arg(long)]
    pub connect: bool,
    /// SMTP server URL, overriding the job and the user config.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// Write the SMTP conversation of --connect to FILE or `-`.
    #[arg(long, value_name = "FILE|-")]
    pub trace: Option<String>,
    /// Render on N threads (default: every core this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// `mailshot preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// The 1-based data row to show.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub row: u64,
}

/// `mailshot send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// To address (repeatable, or comma-separated).
    #[arg(long, required = true, value_name = "ADDR")]
    pub to: Vec<String>,
    /// Cc address (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,
    /// Bcc address (repeatable; envelope only).
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,
    /// The subject.
    #[arg(long, short = 's')]
    pub subject: String,
    /// An HTML file for the HTML part (stdin stays the text part).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// A file to attach (repeatable).
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// The From address (default: the SMTP username).
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// SMTP server URL, overriding the user config.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// Print the message instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the SMTP conversation to FILE or `-`.
    #[arg(long, value_name = "FILE|-")]
    pub trace: Option<String>,
    /// Leave out recipients in the user config's suppression list (default:
    /// warn and send anyway).
    #[arg(long)]
    pub skip_suppressed: bool,
}

/// `mailshot capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Folder for the captured .eml files.
    #[arg(long, default_value = "outbox")]
    pub dir: PathBuf,
    /// Connections served at once; more are answered 421 and closed.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
    /// Drop a client that sends nothing (or no whole line) for this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::job::manifest::parse_duration)]
    pub idle_timeout: std::time::Duration,
}
