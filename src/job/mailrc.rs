//! `mailshot config import-mailrc`: the SMTP settings of an s-nail / mailx
//! `mail.rc` (`set smtp=`, `smtp-auth-user`, `smtp-auth-password`,
//! `smtp-use-starttls`, `from`, `tls-ca-file`) as a mailshot config.

/// What a `mail.rc` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The config file's text (YAML); a password is named as `password_file`.
    pub yaml: String,
    /// The plain-text password found, to be written to that file (0600).
    pub password: Option<String>,
    /// What the reader should know (settings changed or left out).
    pub notes: Vec<String>,
}

/// The `set` variables of a mail.rc, in order (`set a=b c="d e" f`).
fn variables(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("set ")
            .or_else(|| line.strip_prefix("se "))
        else {
            continue;
        };
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none_or(|c| *c == '#') {
                break;
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                name.push(c);
                chars.next();
            }
            let value = if chars.peek() == Some(&'=') {
                chars.next();
                let mut v = String::new();
                let quote = match chars.peek() {
                    Some(&q @ ('"' | '\'')) => {
                        chars.next();
                        Some(q)
                    }
                    _ => None,
                };
                while let Some(c) = chars.next() {
                    match quote {
                        Some(q) if c == q => break,
                        Some('"') if c == '\\' => {
                            if let Some(n) = chars.next() {
                                v.push(n);
                            }
                        }
                        None if c.is_whitespace() => break,
                        _ => v.push(c),
                    }
                }
                Some(v)
            } else {
                None
            };
            out.push((name, value));
        }
    }
    out
}

fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Turn `mail.rc` text into a config; `password_file` is the name the
/// password file will have, relative to the config.
pub fn import(text: &str, password_file: &str) -> Result<Imported, String> {
    let mut smtp = None;
    let (mut user, mut password, mut from, mut ca) = (None, None, None, None);
    let mut starttls = false;
    let mut auth = None;
    for (name, value) in variables(text) {
        match (name.as_str(), value) {
            ("smtp" | "mta", Some(v)) => smtp = Some(v),
            ("smtp-auth-user" | "user", Some(v)) => user = Some(v),
            ("smtp-auth-password" | "password", Some(v)) => password = Some(v),
            ("smtp-use-starttls", _) => starttls = true,
            ("smtp-auth", Some(v)) if ["plain", "login"].contains(&v.as_str()) => auth = Some(v),
            ("from", Some(v)) => from = Some(v),
            ("ssl-ca-file" | "tls-ca-file" | "smtp-ca-file", Some(v)) => ca = Some(v),
            _ => {}
        }
    }
    let smtp = smtp.ok_or("no `set smtp=HOST` (or `mta=`) in the file")?;
    let mut notes = Vec::new();
    let (scheme, rest) = match smtp.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r.to_string()),
        None => ("smtp".to_string(), smtp.clone()),
    };
    // A user in the URL (`smtps://me@host`) counts as smtp-auth-user.
    let (url_user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (
            Some(u.replace("%40", "@")),
            h.trim_end_matches('/').to_string(),
        ),
        None => (None, rest.trim_end_matches('/').to_string()),
    };
    let user = user.or(url_user);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse::<u16>().ok()),
        _ => (hostport.clone(), None),
    };
    let security = match scheme.as_str() {
        "smtps" => "tls",
        "smtp" if starttls => "starttls",
        "smtp" => {
            notes.push(format!(
                "{host}: mail.rc sends without TLS; the config asks for STARTTLS (mailshot \
                 never sends a password in clear text) — set `security: none` only for a \
                 server on this machine"
            ));
            "starttls"
        }
        other => return Err(format!("smtp={smtp}: unknown scheme {other}://")),
    };
    let port = port.unwrap_or(match security {
        "tls" => 465,
        _ => 25,
    });
    let mut yaml =
        String::from("# Imported from a mail.rc by `mailshot config import-mailrc`.\nsmtp:\n");
    yaml.push_str(&format!(
        "  host: {}\n  port: {port}\n  security: {security}\n",
        yaml_quote(&host)
    ));
    if let Some(u) = &user {
        yaml.push_str(&format!("  username: {}\n", yaml_quote(u)));
        if password.is_some() {
            yaml.push_str(&format!("  password_file: {}\n", yaml_quote(password_file)));
        } else {
            yaml.push_str("  password_env: MAILSHOT_PASSWORD\n");
            notes
                .push("no smtp-auth-password: the password is read from $MAILSHOT_PASSWORD".into());
        }
    } else if password.is_some() {
        notes.push("smtp-auth-password without smtp-auth-user: the password is left out".into());
        password = None;
    }
    if let (Some(a), Some(_)) = (&auth, &user) {
        yaml.push_str(&format!("  auth: {a}\n"));
    }
    if let Some(ca) = &ca {
        yaml.push_str(&format!("  ca_file: {}\n", yaml_quote(ca)));
    }
    if let Some(f) = &from {
        yaml.push_str(&format!("from: {}\n", yaml_quote(f)));
    }
    Ok(Imported {
        yaml,
        password,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_163_mail_rc() {
        let rc = "# mail.rc\nset from=me@163.com\nset smtp=smtp.163.com\n\
                  set smtp-auth-user=me@163.com smtp-auth-password=\"pa ss\\\"word\" smtp-auth=login\n";
        let got = import(rc, "smtp.pw").unwrap();
        assert_eq!(got.password.as_deref(), Some("pa ss\"word"));
        assert!(
            got.yaml
                .contains("host: \"smtp.163.com\"\n  port: 25\n  security: starttls\n"),
            "{}",
            got.yaml
        );
        assert!(got
            .yaml
            .contains("username: \"me@163.com\"\n  password_file: \"smtp.pw\"\n"));
        assert!(got.yaml.contains("\nfrom: \"me@163.com\"\n"));
        assert!(got.yaml.contains("  auth: login\n"), "{}", got.yaml);
        assert!(!got.yaml.contains("pa ss"), "no secret in the config");
        assert_eq!(got.notes.len(), 1, "plain text is upgraded, and said so");
    }

    #[test]
    fn urls_and_starttls() {
        let got = import(
            "set smtp=smtps://smtp.qq.com:465\nset smtp-auth-user=a@qq.com\n",
            "p",
        )
        .unwrap();
        assert!(got.yaml.contains("port: 465\n  security: tls\n"));
        assert!(got.yaml.contains("password_env: MAILSHOT_PASSWORD"));
        let got = import(
            "set smtp-use-starttls\nset smtp=smtp://h.example:587\n",
            "p",
        )
        .unwrap();
        assert!(got.yaml.contains("port: 587\n  security: starttls\n"));
        assert!(got.notes.is_empty());
        assert!(import("set from=x@y\n", "p").is_err());
    }
}
