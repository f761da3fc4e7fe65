//! `mailshot config import-mailrc [FILE]`: write the config a mail.rc
//! describes, and its password (if it had one in plain text) to a 0600 file
//! beside it. Nothing existing is overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::cli::ConfigCommand;
use crate::error::{Error, ExitCode, Result};
use crate::job::mailrc;

/// Create `path` (mode `mode`) with `data`; never replaces a file.
fn create(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| crate::outputs::error("config", path, &e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| crate::outputs::error("config", path, &e))
}

/// `mailshot config ...`.
pub fn config(cmd: &ConfigCommand) -> Result<ExitCode> {
    let ConfigCommand::ImportMailrc { file, out } = cmd;
    let file = match file {
        Some(f) => f.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".mailrc"))
            .ok_or_else(|| Error::Usage("no FILE given and HOME is not set".into()))?,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| Error::no_input(&file, &e))?;
    let out = match out {
        Some(o) => o.clone(),
        None => crate::job::user_config_path()
            .ok_or_else(|| Error::Usage("no --out FILE given and HOME is not set".into()))?,
    };
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let pw_name = format!("{stem}.password");
    let imported = mailrc::import(&text, &pw_name)
        .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    if out.exists() {
        return Err(Error::CantCreate(format!(
            "{} exists; mailshot does not overwrite a config (pass --out FILE)",
            out.display()
        )));
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| crate::outputs::error("config", dir, &e))?;
    if let Some(pw) = &imported.password {
        create(&dir.join(&pw_name), format!("{pw}\n").as_bytes(), 0o600)?;
    }
    create(&out, imported.yaml.as_bytes(), 0o644)?;
    for note in &imported.notes {
        eprintln!("mailshot: note: {note}");
    }
    eprintln!("mailshot: wrote {}", out.display());
    Ok(ExitCode::Ok)
}
