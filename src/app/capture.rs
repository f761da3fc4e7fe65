//! `mailshot capture`: the built-in capture server in the foreground, every
//! message it receives (RFC 5321) stored as an `.eml` file.

use crate::capture::{self, Limits};
use crate::cli::CaptureArgs;
use crate::error::{ExitCode, Result};

/// `mailshot capture [--listen ADDR] [--dir DIR]`.
pub fn capture(args: &CaptureArgs) -> Result<ExitCode> {
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        idle_timeout: args.idle_timeout,
    };
    capture::run(args.listen, args.dir.clone(), limits)?;
    Ok(ExitCode::Ok)
}
