//! The `mailshot` binary: parse arguments, run the command, map errors to
//! sysexits codes (as the README lists them).

use clap::Parser;
use mailshot::cli::Cli;
use mailshot::error::ExitCode;

fn main() {
    keep_big_blocks_out_of_the_heap();
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
    if matches!(cli.command, mailshot::cli::Command::Capture(_)) {
        keep_freed_blocks_for_the_next_message();
    }
    exit(mailshot::app::main(cli));
}

/// glibc's malloc raises its mmap threshold each time a large block is
/// freed, so the large vectors a run grows later (the journal's replay and
/// the report's index for a million rows) land in the heap and leave holes
/// there that stay resident. A fixed threshold keeps blocks of 4 MiB and
/// more in their own mappings, which go back to the system when freed.
fn keep_big_blocks_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator;
    // it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// The capture server takes message after message of up to megabytes: a
/// freed buffer at the top of the heap is kept for the next one instead of
/// being given back and faulted in afresh. Only there: a run's memory peak
/// would keep what it freed.
fn keep_freed_blocks_for_the_next_message() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator;
    // it is called before the server starts any thread.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
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
