//! The `mailshot` binary: parse arguments, run the command, map errors to
//! sysexits codes (README, "Big runs").

use clap::Parser;
use mailshot::cli::Cli;
use mailshot::error::ExitCode;

fn main() {
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
    let code = match mailshot::app::main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mailshot: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code as i32);
}
