//! Raw manifest → checked [`Job`], with file/line/column errors.
//!
//! The second validation stage (after the serde types): everything that can
//! be checked without the network or a recipient row is checked here, and
//! every problem is reported at once. YAML and value errors come with the
//! line and column serde_yaml reports; problems involving several keys are
//! located by finding the key's line in the file text.

use std::path::{Path, PathBuf};

use super::manifest::RawJob;
use super::{AttachmentSpec, DkimSpec, Job, RecipientsSpec};
use crate::address;
use crate::error::{Error, Location, Result};

mod bounces_section;
#[cfg(test)]
mod bounces_tests;
mod pool;
#[cfg(test)]
mod pool_tests;
mod problems;
pub mod sender_rule;
pub mod smtp_section;
pub mod user_config;
mod yaml;

use bounces_section::build_bounces;
use problems::Problems;
use smtp_section::build_smtp;
use yaml::{check_nesting, yaml_error};

/// Parse `--var KEY=VALUE` arguments.
pub fn parse_vars(vars: &[String]) -> Result<Vec<(String, String)>> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_string(), val.to_string())),
            _ => Err(Error::Usage(format!("--var expects KEY=VALUE, got {v:?}"))),
        })
        .collect()
}

/// Read and validate the job file at `path`; `vars` (from `--var KEY=VALUE`)
/// are added to the job's `vars`, overriding keys of the same name.
pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Job> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            Error::invalid(Location::file(path), "the job file is not valid UTF-8")
        }
        _ => Error::no_input(path, &e),
    })?;
    parse_job(&text, path, vars)
}

/// Validate job file text as if read from `path` (relative paths resolve
/// against `path`'s folder; template and CSV files must exist).
pub fn parse_job(text: &str, path: &Path, vars: &[(String, String)]) -> Result<Job> {
    if text.trim().is_empty() {
        return Err(Error::invalid(
            Location::file(path),
            "the job file is empty; it needs at least from, subject, a body (text, html or markdown) and recipients",
        ));
    }
    check_nesting(path, text)?;
    let raw: RawJob = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut p = Problems::new(path, text);

    let smtp = raw.smtp.as_ref().and_then(|s| build_smtp(s, &dir, &mut p));

    let from = match raw.from.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            check_static_addresses(&mut p, "from", f, true);
            f.to_string()
        }
        _ => {
            p.at(
                &["from"],
                "missing required key `from` (the sender, e.g. \"Newsletter <me@example.com>\")",
            );
            String::new()
        }
    };
    for (key, value) in [
        ("reply_to", &raw.reply_to),
        ("to", &raw.to),
        ("cc", &raw.cc),
        ("bcc", &raw.bcc),
    ] {
        if let Some(v) = value {
            check_static_addresses(&mut p, key, v, false);
        }
    }
    if let Some(v) = &raw.return_path {
        check_static_addresses(&mut p, "return_path", v, true);
    }
    let subject = raw.subject.clone().unwrap_or_else(|| {
        p.at(&["subject"], "missing required key `subject`");
        String::new()
    });

    if raw.text.is_none() && raw.html.is_none() && raw.markdown.is_none() {
        p.at(
            &[],
            "the job needs a body: `text` (plain-text template file), `html`, or `markdown`",
        );
    }
    if raw.markdown.is_some() && (raw.text.is_some() || raw.html.is_some()) {
        p.at(
            &["markdown"],
            "`markdown` renders both the text and the HTML part; remove `text` and `html`, or `markdown`",
        );
    }
    let text_path = raw
        .text
        .as_deref()
        .map(|f| p.input_file(&dir, &["text"], f));
    let html_path = raw
        .html
        .as_deref()
        .map(|f| p.input_file(&dir, &["html"], f));
    let markdown = raw
        .markdown
        .as_deref()
        .map(|f| p.input_file(&dir, &["markdown"], f));

    let mut attachments = Vec::with_capacity(raw.attachments.len());
    for a in &raw.attachments {
        if a.path.trim().is_empty() {
            p.at(&["attachments"], "an attachment has an empty `path`");
        }
        attachments.push(AttachmentSpec {
            path: a.path.clone(),
            name: a.name.clone(),
        });
    }

    let max_attachment_size = match &raw.max_attachment_size {
        None => super::manifest::DEFAULT_MAX_ATTACHMENT_SIZE,
        Some(value) => {
            let text = match value {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            super::manifest::parse_size(&text).unwrap_or_else(|e| {
                p.at(
                    &["max_attachment_size"],
                    format!("max_attachment_size: {e}"),
                );
                super::manifest::DEFAULT_MAX_ATTACHMENT_SIZE
            })
        }
    };

    let dkim = raw.dkim.as_ref().map(|d| {
        if d.domain.trim().is_empty() {
            p.at(&["dkim", "domain"], "dkim.domain is empty");
        }
        if d.selector.trim().is_empty() {
            p.at(&["dkim", "selector"], "dkim.selector is empty");
        }
        DkimSpec {
            domain: d.domain.trim().to_string(),
            selector: d.selector.trim().to_string(),
            key_file: p.input_file(&dir, &["dkim", "key_file"], &d.key_file),
        }
    });

    let recipients = match &raw.recipients {
        None => {
            p.at(
                &["recipients"],
                "missing required key `recipients` (at least `recipients: { file: recipients.csv }`)",
            );
            None
        }
        Some(r) => {
            let file = match r.file.as_deref() {
                Some(f) if !f.trim().is_empty() => {
                    Some(p.input_file(&dir, &["recipients", "file"], f))
                }
                _ => {
                    p.at(
                        &["recipients"],
                        "missing required key `recipients.file` (the CSV file)",
                    );
                    None
                }
            };
            let email_column = r.email_column.clone().unwrap_or_else(|| "email".into());
            if email_column.trim().is_empty() {
                p.at(&["recipients", "email_column"], "email_column is empty");
            }
            file.map(|file| RecipientsSpec {
                file,
                email_column: email_column.trim().to_string(),
                delimiter: r.delimiter.unwrap_or(b','),
                encoding: r.encoding.unwrap_or(encoding_rs::UTF_8),
                allow_duplicates: r.allow_duplicates.unwrap_or(false),
            })
        }
    };

    let suppress = suppress_files(&mut p, &dir, raw.suppress.as_ref());
    let bounces = raw
        .bounces
        .as_ref()
        .and_then(|b| build_bounces(b, &dir, &mut p));
    let domains = pool::build_domains(raw.domains.as_ref(), &mut p);

    let mut job_vars = raw.vars.clone();
    if job_vars.keys().any(|k| !k.is_string()) {
        p.at(&["vars"], "every key in `vars` must be a string");
    }
    for (k, v) in vars {
        job_vars.insert(
            serde_yaml::Value::String(k.clone()),
            serde_yaml::Value::String(v.clone()),
        );
    }

    p.finish()?;
    Ok(Job {
        path: path.to_path_buf(),
        dir,
        smtp,
        from,
        reply_to: raw.reply_to,
        to: raw.to,
        cc: raw.cc,
        bcc: raw.bcc,
        subject,
        text: text_path,
        html: html_path,
        markdown,
        attachments,
        max_attachment_size,
        headers: raw.headers.0,
        list_unsubscribe: raw.list_unsubscribe,
        vars: job_vars,
        dkim,
        // `finish` returned early if recipients were missing.
        recipients: recipients.expect("recipients checked"),
        suppress,
        return_path: raw.return_path,
        bounces,
        domains,
    })
}

/// The `suppress` files: the first may not exist yet (`bounces` creates it),
/// every other one must.
fn suppress_files(
    p: &mut Problems,
    dir: &Path,
    raw: Option<&super::manifest::RawSuppress>,
) -> Vec<PathBuf> {
    use super::manifest::RawSuppress;
    let names: Vec<&str> = match raw {
        None => Vec::new(),
        Some(RawSuppress::One(f)) => vec![f.as_str()],
        Some(RawSuppress::Many(fs)) => fs.iter().map(String::as_str).collect(),
    };
    let mut files = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        if name.trim().is_empty() {
            p.at(&["suppress"], "a `suppress` file name is empty");
            continue;
        }
        let path = dir.join(name.trim());
        if i == 0 && !path.exists() {
            files.push(path);
        } else {
            files.push(p.input_file(dir, &["suppress"], name));
        }
    }
    files
}

/// Addresses without template syntax can be checked now rather than per row.
fn check_static_addresses(p: &mut Problems, key: &str, value: &str, single: bool) {
    if value.contains("{{") || value.contains("{%") {
        return;
    }
    match address::parse_mailbox_list(value) {
        Ok(list) if single && list.len() != 1 => {
            p.at(&[key], format!("`{key}` must be exactly one address"))
        }
        Ok(_) => {}
        Err(e) => p.at(&[key], format!("`{key}`: {e}")),
    }
}

#[cfg(test)]
mod tests;
