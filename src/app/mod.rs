//! Command implementations called by `main`: each turns parsed arguments into
//! calls on the library and returns the exit code.

pub mod preview;
pub mod run;
pub mod send;
pub mod target;

use crate::cli::{Cli, Command};
use crate::error::{ExitCode, Result};

/// Run the command line's command.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) if args.dry_run => preview::dry_run(&args),
        Command::Run(args) => run::run(&args),
        Command::Check(args) => preview::check(&args),
        Command::Preview(args) => preview::preview(&args),
        Command::Send(args) => send::send(&args),
        Command::Capture(args) => {
            let limits = crate::capture::Limits {
                max_connections: args.max_connections.max(1),
                idle_timeout: args.idle_timeout,
            };
            crate::capture::run(args.listen, args.dir.clone(), limits)?;
            Ok(ExitCode::Ok)
        }
    }
}
