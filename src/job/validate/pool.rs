//! `smtp.relays` (a pool of servers, each checked like `smtp:` itself and
//! located at its own item) and `domains:` (limits per recipient domain).
//!
//! A relay inherits, from the enclosing `smtp:` section, every key it does
//! not set itself, except in two groups that go together: where to connect
//! (`provider`, `url`, `host`, `port`, `security`) and whose account
//! (`username` and the password source; a `url` naming a user counts as
//! setting it). A relay that sets one key of a group inherits none of it.

use std::path::Path;

use super::problems::Problems;
use super::smtp_section::build_server;
use crate::job::manifest::{RawDomain, RawSmtp};
use crate::job::{smtp_url, DomainLimit, SmtpSettings};

/// The pool: every relay checked (problems located at `smtp.relays[i]`), the
/// first relay standing for the section where one server is asked for.
pub(super) fn build_pool(
    raw: &RawSmtp,
    relays: &[RawSmtp],
    dir: &Path,
    p: &mut Problems,
) -> Option<SmtpSettings> {
    if relays.is_empty() {
        p.at(&["smtp", "relays"], "relays must list at least one server");
        return None;
    }
    let outer = p.section.clone();
    let base: Vec<String> = outer.clone().unwrap_or_else(|| vec!["smtp".into()]);
    let mut built = Vec::new();
    for (i, relay) in relays.iter().enumerate() {
        let mut item = base.clone();
        item.push(format!("relays[{i}]"));
        p.section = Some(item);
        if relay.relays.is_some() {
            p.at(&["smtp", "relays"], "a relay cannot list relays of its own");
        }
        if relay.patience.is_some() {
            p.at(
                &["smtp", "patience"],
                "patience belongs to the smtp section, not to one relay",
            );
        }
        if let Some(s) = build_server(&inherit(raw, relay), dir, p) {
            built.push(s);
        }
    }
    p.section = outer;
    let mut names: Vec<String> = built.iter().map(SmtpSettings::relay_name).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        p.at(
            &["smtp", "relays"],
            format!(
                "two relays are named {:?}; give each a different `name`",
                w[0]
            ),
        );
    }
    if built.len() != relays.len() {
        return None;
    }
    let mut first = built[0].clone();
    if let Some(t) = raw.patience {
        first.patience = t;
    }
    first.relays = built;
    Some(first)
}

/// `relay` with the keys it leaves unset taken from `outer` (see the module docs).
fn inherit(outer: &RawSmtp, relay: &RawSmtp) -> RawSmtp {
    let mut r = relay.clone();
    let sets_place = r.provider.is_some()
        || r.url.is_some()
        || r.host.is_some()
        || r.port.is_some()
        || r.security.is_some();
    if !sets_place {
        r.provider.clone_from(&outer.provider);
        r.url.clone_from(&outer.url);
        r.host.clone_from(&outer.host);
        r.port = outer.port;
        r.security = outer.security;
    }
    let url_user = r
        .url
        .as_deref()
        .and_then(|u| smtp_url::parse(u).ok())
        .and_then(|u| u.username)
        .is_some();
    let sets_account = r.username.is_some()
        || r.password_env.is_some()
        || r.password_file.is_some()
        || r.password_command.is_some()
        || url_user;
    if !sets_account {
        r.username.clone_from(&outer.username);
        r.password_env.clone_from(&outer.password_env);
        r.password_file.clone_from(&outer.password_file);
        r.password_command.clone_from(&outer.password_command);
    }
    macro_rules! keep {
        ($($key:ident),*) => { $( if r.$key.is_none() { r.$key.clone_from(&outer.$key); } )* };
    }
    keep!(
        ca_file,
        auth,
        sessions,
        max_messages_per_session,
        rate,
        timeout,
        data_timeout,
        max_attempts,
        retry_delay,
        helo,
        allow_plaintext_auth,
        daily_limit
    );
    r.relays = None;
    r.patience = None;
    r
}

/// `domains:` checked: each key a domain (stored lowercase) or `"*"`.
pub(super) fn build_domains(
    raw: Option<&indexmap::IndexMap<String, RawDomain>>,
    p: &mut Problems,
) -> Vec<(String, DomainLimit)> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, d) in raw {
        let name = key.trim().trim_start_matches('@').to_ascii_lowercase();
        let here = ["domains", key.as_str()];
        if name != "*"
            && (name.is_empty()
                || !name.contains('.')
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || c == '@' || c.is_control()))
        {
            p.at(
                &here,
                format!(
                    "{key:?} is not a domain; use e.g. qq.com, or \"*\" for every other domain"
                ),
            );
        }
        if d.sessions == Some(0) {
            p.at(&here, "sessions must be at least 1");
        }
        if d.rate.is_none() && d.sessions.is_none() {
            p.at(&here, "give a rate, sessions or both");
        }
        if out.iter().any(|(n, _)| *n == name) {
            p.at(&here, format!("{name} is listed twice"));
        }
        out.push((
            name,
            DomainLimit {
                rate: d.rate,
                sessions: d.sessions,
            },
        ));
    }
    out
}
