//! The user config (`$XDG_CONFIG_HOME/mailshot/config.yaml`), then the
//! system config (`/etc/mailshot/config.yaml`, for programs that run as
//! other users: cron, PHP, daemons): the first `smtp:` section found,
//! checked like a job's.

use std::path::{Path, PathBuf};

use super::problems::Problems;
use super::smtp_section::build_smtp;
use super::yaml::{check_nesting, yaml_error};
use crate::error::{Error, Result};
use crate::job::manifest::{
    parse_size, RawSmtp, RawSuppress, RawUserConfig, DEFAULT_MAX_MESSAGE_SIZE,
};
use crate::job::{DkimSpec, SmtpSettings};

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

/// The `suppress` files of the user config (resolved against its folder),
/// if it names any; they must exist.
pub fn load_user_suppress() -> Result<Vec<PathBuf>> {
    let Some(path) = user_config_path() else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::no_input(&path, &e)),
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: RawUserConfig = serde_yaml::from_str(&text).map_err(|e| yaml_error(&path, &e))?;
    let names = match raw.suppress {
        None => Vec::new(),
        Some(RawSuppress::One(f)) => vec![f],
        Some(RawSuppress::Many(fs)) => fs,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new(&path, &text);
    let files = names
        .iter()
        .map(|n| p.input_file(dir, &["suppress"], n))
        .collect();
    p.finish()?;
    Ok(files)
}

/// The `smtp:` section of the config file at `path`; `Ok(None)` if the file
/// does not exist or has no `smtp:` section. Paths in it resolve against its folder.
pub fn load_user_smtp_from(path: &Path) -> Result<Option<SmtpSettings>> {
    match read_config(path)? {
        Some((text, raw)) => match &raw.smtp {
            Some(smtp) => build_section(path, &text, smtp, None),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// The server for a sendmail submission, as msmtp picks its account: the
/// account `name` (`-a NAME`) if given; else the account named after the
/// sender's domain, or whose username has that domain; else the default
/// `smtp:` section. The user config decides if it has an `smtp:` or
/// `accounts:` section, else the system config.
pub fn load_account(name: Option<&str>, sender: Option<&str>) -> Result<Option<SmtpSettings>> {
    let files: Vec<PathBuf> = user_config_path()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)])
        .collect();
    let domain = sender
        .and_then(|s| s.rsplit_once('@'))
        .map(|(_, d)| d.to_lowercase());
    for path in &files {
        let Some((text, raw)) = read_config(path)? else {
            continue;
        };
        if let Some(name) = name {
            if let Some(account) = raw.accounts.get(name) {
                return build_section(path, &text, account, Some(name));
            }
            continue;
        }
        if raw.smtp.is_none() && raw.accounts.is_empty() {
            continue;
        }
        if let Some(domain) = &domain {
            let matching = raw.accounts.iter().find(|(n, a)| {
                n.eq_ignore_ascii_case(domain)
                    || a.username
                        .as_deref()
                        .and_then(|u| u.rsplit_once('@'))
                        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            });
            if let Some((n, account)) = matching {
                return build_section(path, &text, account, Some(n));
            }
        }
        return match &raw.smtp {
            Some(smtp) => build_section(path, &text, smtp, None),
            None => Ok(None),
        };
    }
    match name {
        Some(name) => Err(Error::Usage(format!(
            "no account {name:?} in the accounts: of {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
        None => Ok(None),
    }
}

/// The sendmail queue folder: `queue:` of the user config, else of the
/// system config, relative to that file's folder.
pub fn load_queue_dir() -> Result<Option<PathBuf>> {
    let files = user_config_path()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)]);
    for path in files {
        if let Some((_, raw)) = read_config(&path)? {
            if let Some(dir) = raw.queue {
                let base = path.parent().unwrap_or(Path::new("."));
                return Ok(Some(base.join(dir.trim())));
            }
        }
    }
    Ok(None)
}

/// The configured default sender (`from:`), user config first.
pub fn load_default_from() -> Result<Option<String>> {
    let files = user_config_path()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)]);
    for path in files {
        if let Some((_, raw)) = read_config(&path)? {
            if raw.from.is_some() {
                return Ok(raw.from);
            }
        }
    }
    Ok(None)
}

/// The configured DKIM signing (`dkim:`, the key relative to the config),
/// user config first; for `send` and `sendmail`.
pub fn load_dkim() -> Result<Option<DkimSpec>> {
    let files = user_config_path()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)]);
    for path in files {
        let Some((text, raw)) = read_config(&path)? else {
            continue;
        };
        let Some(d) = &raw.dkim else {
            continue;
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut p = Problems::new(&path, &text);
        if d.domain.trim().is_empty() {
            p.at(&["dkim", "domain"], "dkim.domain is empty");
        }
        if d.selector.trim().is_empty() {
            p.at(&["dkim", "selector"], "dkim.selector is empty");
        }
        let spec = DkimSpec {
            domain: d.domain.trim().to_string(),
            selector: d.selector.trim().to_string(),
            key_file: p.input_file(dir, &["dkim", "key_file"], &d.key_file),
        };
        p.finish()?;
        return Ok(Some(spec));
    }
    Ok(None)
}

/// The text and parsed contents of a config file; `None` if it does not
/// exist or is empty.
/// The largest message `sendmail` reads (`max_message_size:`), user config
/// first, else the default of 64 MB.
pub fn load_max_message_size() -> Result<u64> {
    let files = user_config_path()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)]);
    for path in files {
        let Some((text, raw)) = read_config(&path)? else {
            continue;
        };
        let Some(value) = &raw.max_message_size else {
            continue;
        };
        let size = match value {
            serde_yaml::Value::String(s) => parse_size(s),
            serde_yaml::Value::Number(n) => parse_size(&n.to_string()),
            _ => Err("use a size such as 10MB or 1GB".to_string()),
        }
        .and_then(|n| match n {
            0 => Err("must be more than 0 bytes".to_string()),
            n => Ok(n),
        });
        let mut p = Problems::new(&path, &text);
        let size = size.unwrap_or_else(|e| {
            p.at(&["max_message_size"], format!("max_message_size: {e}"));
            0
        });
        p.finish()?;
        return Ok(size);
    }
    Ok(DEFAULT_MAX_MESSAGE_SIZE)
}

fn read_config(path: &Path) -> Result<Option<(String, RawUserConfig)>> {
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
    Ok(Some((text, raw)))
}

/// Check one `smtp:`-style section (`account` names it under `accounts:`).
fn build_section(
    path: &Path,
    text: &str,
    raw: &RawSmtp,
    account: Option<&str>,
) -> Result<Option<SmtpSettings>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new(path, text);
    p.section = account.map(|n| vec!["accounts".to_string(), n.to_string()]);
    let smtp = build_smtp(raw, dir, &mut p);
    p.finish()?;
    Ok(smtp)
}
