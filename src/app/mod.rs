//! Command implementations called by `main`: each turns parsed arguments into
//! calls on the library and returns the exit code.

pub mod bounces;
pub mod capture;
pub mod check;
pub mod config;
pub mod generate;
pub mod preview;
pub mod queue;
pub mod report;
pub mod run;
pub mod send;
pub mod sendmail;

use crate::cli::{Cli, Command};
use crate::error::{Error, ExitCode, Result};
use crate::smtp::net::trace::Trace;

/// Run the command line's command.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) if args.dry_run => preview::dry_run(&args),
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::check(&args),
        Command::Preview(args) => preview::preview(&args),
        Command::Send(args) => send::send(&args),
        Command::Capture(args) => capture::capture(&args),
        Command::Sendmail(raw) => sendmail::sendmail(&raw.args),
        Command::Generate(what) => generate::generate(&what),
        Command::Queue(cmd) => queue::queue(&cmd),
        Command::Config(cmd) => config::config(&cmd),
        Command::Report(args) => report::report(&args),
        Command::Bounces(args) => bounces::bounces(&args),
    }
}

/// Open the trace sink for `--trace FILE|-`.
pub fn open_trace(spec: Option<&str>) -> Result<Option<Trace>> {
    match spec {
        None => Ok(None),
        Some("-") => Ok(Some(Trace::new(Box::new(std::io::stderr())))),
        Some(path) => {
            let f = std::fs::File::create(path)
                .map_err(|e| Error::Software(format!("--trace {path}: {e}")))?;
            Ok(Some(Trace::new(Box::new(std::io::BufWriter::new(f)))))
        }
    }
}
