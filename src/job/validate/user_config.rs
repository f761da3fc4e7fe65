//! The user config (`$XDG_CONFIG_HOME/mailshot/config.yaml`), then the
//! system config (`/etc/mailshot/config.yaml`, for programs that run as
//! other users: cron, PHP, daemons): the first `smtp:` section found,
//! checked like a job's.

use std::path::{Path, PathBuf};

use super::problems::Problems;
use super::smtp_section::build_smtp;
use super::yaml::{check_nesting, yaml_error};
use crate::error::{Error, Result};
use crate::job::manifest::RawUserConfig;
use crate::job::SmtpSettings;

/// `$XDG_CONFIG_HOME/mailshot/config.yaml` (or `~/.config/...`).
pub fn user_config_path() -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|h| h.join(".config"))
        })?;
    Some(base.join("mailshot").join("config.yaml"))
}

/// The system-wide config, read when the user config has no `smtp:` section.
pub const SYSTEM_CONFIG: &str = "/etc/mailshot/config.yaml";

/// The `smtp:` section of the user config, else of the system config.
pub fn load_user_smtp() -> Result<Option<SmtpSettings>> {
    if let Some(path) = user_config_path() {
        if let Some(smtp) = load_user_smtp_from(&path)? {
            return Ok(Some(smtp));
        }
    }
    load_user_smtp_from(Path::new(SYSTEM_CONFIG))
}

/// The `smtp:` section of the config file at `path`; `Ok(None)` if the file
/// does not exist or has no `smtp:` section. Paths in it resolve against its folder.
pub fn load_user_smtp_from(path: &Path) -> Result<Option<SmtpSettings>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::no_input(path, &e)),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    check_nesting(path, &text)?;
    let raw: RawUserConfig = serde_yaml::from_str(&text).map_err(|e| yaml_error(path, &e))?;
    let Some(raw_smtp) = raw.smtp else {
        return Ok(None);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new(path, &text);
    let smtp = build_smtp(&raw_smtp, dir, &mut p);
    p.finish()?;
    Ok(smtp)
}
