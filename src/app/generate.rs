//! `mailshot generate man|completions SHELL`: the man page (clap_mangen) and
//! shell completions (clap_complete), both made from the same clap
//! definitions as the command line itself, so they cannot drift from it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Generate};
use crate::error::{Error, ExitCode, Result};

/// Write what was asked for to stdout.
pub fn generate(what: &Generate) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    match what {
        Generate::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(cmd, dir))
                .map_err(|e| crate::outputs::error("man pages", dir, &e))?;
            return Ok(ExitCode::Ok);
        }
        Generate::Man { dir: None } => clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| Error::Software(format!("man page: {e}")))?,
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "mailshot", &mut out)
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Output(format!("stdout: {e}")))?;
    Ok(ExitCode::Ok)
}
