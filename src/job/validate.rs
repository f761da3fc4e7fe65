//! Raw manifest → checked [`Job`](super::Job), with file/line/column errors.

use std::path::{Path, PathBuf};

use super::{Job, SmtpSettings};
use crate::error::Result;

/// Read and validate the job file at `path`; `vars` (from `--var KEY=VALUE`)
/// are added to the job's `vars`, overriding keys of the same name.
pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Job> {
    let _ = (path, vars);
    todo!("job helper")
}

/// `$XDG_CONFIG_HOME/mailshot/config.yaml` (or `~/.config/...`).
pub fn user_config_path() -> Option<PathBuf> {
    todo!("job helper")
}

/// The `smtp:` section of the user config, if that file exists.
pub fn load_user_smtp() -> Result<Option<SmtpSettings>> {
    todo!("job helper")
}
