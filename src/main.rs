//! The `mailshot` binary: parse arguments, run the command, map errors to
//! sysexits codes (as the README lists them).

use clap::Parser;
use mailshot::cli::Cli;
use mailshot::error::ExitCode;

fn main() {
    // Installed as (or linked to) `sendmail`, the arguments are sendmail's.
    let mut argv = std::env::args_os();
    let name = argv.next().unwrap_or_default();
    if std::path::Path::new(&name).file_name() == Some(std::ffi::OsStr::new("sendmail")) {
        let args: Vec<_> = argv.collect();
        exit(mailshot::app::sendmail::sendmail(&args));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => ExitCode::Usage as i32,
            };
            std::process::exit(code);
        }
    };
    exit(mailshot::app::main(cli));
}

/// Print the error, if any, and exit with the command's status.
fn exit(result: mailshot::error::Result<ExitCode>) -> ! {
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mailshot: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code as i32);
}
