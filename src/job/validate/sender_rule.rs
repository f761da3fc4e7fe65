//! Provider sender rules known before sending: QQ, 163 and 126 accept only
//! the login's own address as the envelope sender (MAIL FROM) and the From
//! address, and refuse anything else with `501 mail from address must be
//! same as authorization user` (QQ) or `553 Mail from must equal authorized
//! user` (NetEase). `check` and `run` compare every row's rendered From and
//! `return_path` with `smtp.username` before anything is sent.
//!
//! Only the address counts, compared case-insensitively: a display name of
//! its own is fine. A login without a domain (a QQ number) stands for the
//! address at the provider's own domain.

use std::path::Path;

use crate::error::{Diagnostic, Error, Location, Problems, Result};
use crate::job::position::key_position;
use crate::job::provider;
use crate::job::target::Target;

/// A provider that sends only as the login.
struct Rule {
    /// The preset's name (`qq`, `163`, `126`).
    provider: &'static str,
    /// The mail domain of a login given without one.
    domain: &'static str,
    /// What the server answers to another sender.
    reply: &'static str,
}

static RULES: &[Rule] = &[
    Rule {
        provider: "qq",
        domain: "qq.com",
        reply: "501 mail from address must be same as authorization user",
    },
    Rule {
        provider: "163",
        domain: "163.com",
        reply: "553 Mail from must equal authorized user",
    },
    Rule {
        provider: "126",
        domain: "126.com",
        reply: "553 Mail from must equal authorized user",
    },
];

/// Checks each rendered row's senders against the login, when the
/// target's provider has such a rule; otherwise it sees nothing.
pub struct SenderCheck {
    /// The rule, the login address (lowercase) and the job file's text.
    active: Option<(&'static Rule, String, String)>,
    job: std::path::PathBuf,
    problems: Problems,
    rows: u64,
}

impl SenderCheck {
    /// The check for the job at `job` sending to `target`.
    pub fn new(job: &Path, target: &Target) -> SenderCheck {
        let active = match target {
            Target::Smtp(s) => s
                .provider
                .as_deref()
                .and_then(provider::lookup)
                .and_then(|p| RULES.iter().find(|r| r.provider == p.name))
                .zip(s.username.as_deref())
                .map(|(rule, user)| {
                    let user = user.trim().to_lowercase();
                    let login = if user.contains('@') {
                        user
                    } else {
                        format!("{user}@{}", rule.domain)
                    };
                    let text = std::fs::read_to_string(job).unwrap_or_default();
                    (rule, login, text)
                }),
            Target::Capture(_) => None,
        };
        SenderCheck {
            active,
            job: job.to_path_buf(),
            problems: Problems::default(),
            rows: 0,
        }
    }

    /// Whether the target's provider has a sender rule (else [`see`](Self::see)
    /// does nothing and callers may skip the pass).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Row `row` renders its From address as `from` and its envelope
    /// sender (`return_path`, if set) as `return_path`.
    pub fn see(&mut self, row: u64, from: Option<&str>, return_path: Option<&str>) {
        let Some((rule, login, text)) = &self.active else {
            return;
        };
        let mut bad = false;
        for (key, value) in [("from", from), ("return_path", return_path)] {
            let Some(addr) = value else { continue };
            if addr.trim().to_lowercase() == *login {
                continue;
            }
            bad = true;
            let (line, column) = key_position(text, &[key]);
            self.problems.push(Diagnostic::new(
                Location {
                    file: self.job.clone(),
                    line,
                    column,
                    row: Some(row),
                    field: None,
                },
                format!(
                    "`{key}` is {addr}, but the {} login (smtp.username) is {login}",
                    rule.provider
                ),
            ));
        }
        self.rows += u64::from(bad);
    }

    /// `Err` (exit 65) naming every row seen whose senders break the rule,
    /// and the rule with the provider's reply; `Ok` otherwise.
    pub fn finish(self) -> Result<()> {
        let Some((rule, login, _)) = self.active else {
            return Ok(());
        };
        if self.problems.is_empty() {
            return Ok(());
        }
        let Error::Invalid(mut diags) = self.problems.into_error() else {
            unreachable!("Problems::into_error is always Invalid")
        };
        diags.push(Diagnostic::new(
            Location::default(),
            format!(
                "{} sends only as the login: it refuses any other envelope sender or From \
                 address with `{}`. Set `from` (and `return_path`, if any) to {login}; a \
                 display name of your own is fine (\"News <{login}>\"). Rows affected: {}; \
                 nothing was sent.",
                rule.provider, rule.reply, self.rows
            ),
        ));
        Err(Error::Invalid(diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Security, SmtpSettings};

    fn target(provider: Option<&str>, username: Option<&str>) -> Target {
        let mut s = SmtpSettings::new("127.0.0.1", 2525, Security::None);
        s.provider = provider.map(str::to_owned);
        s.username = username.map(str::to_owned);
        Target::Smtp(Box::new(s))
    }

    fn messages(result: Result<()>) -> Vec<String> {
        match result {
            Err(Error::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_from_other_than_the_login_is_refused_on_qq_naming_row_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.yaml");
        std::fs::write(&job, "smtp: { provider: qq }\nfrom: \"{{ sender }}\"\n").unwrap();
        let mut c = SenderCheck::new(&job, &target(Some("qq"), Some("Me@QQ.com")));
        c.see(1, Some("me@qq.com"), None);
        c.see(2, Some("other@qq.com"), None);
        let m = messages(c.finish());
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0],
            format!(
                "{}:2:1 (row 2): `from` is other@qq.com, but the qq login (smtp.username) is \
                 me@qq.com",
                job.display()
            )
        );
        assert!(
            m[1].contains("501 mail from address must be same as authorization user"),
            "{}",
            m[1]
        );
        assert!(m[1].contains("Rows affected: 1;"), "{}", m[1]);
    }

    #[test]
    fn netease_checks_the_return_path_too_and_names_its_reply() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.yaml");
        std::fs::write(
            &job,
            "from: me@163.com\nreturn_path: \"b+{{ row }}@163.com\"\n",
        )
        .unwrap();
        for preset in ["163", "netease"] {
            let mut c = SenderCheck::new(&job, &target(Some(preset), Some("me@163.com")));
            c.see(7, Some("me@163.com"), Some("b+7@163.com"));
            let m = messages(c.finish());
            assert!(
                m[0].contains(":2:1 (row 7): `return_path` is b+7@163.com"),
                "{m:?}"
            );
            assert!(
                m[1].contains("553 Mail from must equal authorized user"),
                "{m:?}"
            );
        }
    }

    #[test]
    fn same_address_in_any_case_passes_and_a_bare_qq_number_is_its_qq_address() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.yaml");
        let mut c = SenderCheck::new(&job, &target(Some("qq"), Some("12345")));
        c.see(1, Some("12345@QQ.com"), Some("12345@qq.com"));
        assert!(c.finish().is_ok());
        let mut c = SenderCheck::new(&job, &target(Some("126"), Some("me@126.com")));
        c.see(1, Some("ME@126.COM"), None);
        assert!(c.finish().is_ok());
    }

    #[test]
    fn other_providers_and_the_capture_server_have_no_such_rule() {
        let job = Path::new("job.yaml");
        for t in [
            target(Some("gmail"), Some("me@gmail.com")),
            target(None, Some("me@example.com")),
            target(Some("qq"), None),
            Target::Capture("outbox".into()),
        ] {
            let mut c = SenderCheck::new(job, &t);
            c.see(1, Some("someone@else.example"), Some("x@y.example"));
            assert!(c.finish().is_ok());
        }
    }
}
