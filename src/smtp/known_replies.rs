//! Replies that mean more than their code: one table of the texts that say
//! the sending account or connection is over a limit (which pause a relay
//! instead of failing the recipient), content rejections, and provider
//! replies worth a one-line explanation. Each entry names its source.
//!
//! A limit reply never marks a recipient rejected: the message goes back
//! to the queue, for another relay or for later.

use super::reply::Reply;

/// What a known reply means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The sending account or connection is over a quota or a rate: pause
    /// the relay and send the message later or elsewhere.
    Limit,
    /// The content was refused (a spam filter): retrying the same message
    /// will not help.
    Content,
    /// Anything else worth explaining (a service not enabled, a sender that
    /// must equal the login): the code decides what happens.
    Other,
}

/// One known reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// What the reply means for the run.
    pub meaning: Meaning,
    /// A one-line explanation for the summary and the JSON events.
    pub explanation: &'static str,
    /// Where the pattern comes from (a provider's help page, an RFC).
    pub source: &'static str,
}

/// How an entry recognises a reply.
struct Entry {
    /// Reply codes it applies to (empty: any).
    codes: &'static [u16],
    /// Enhanced status code prefix it applies to (`"4.7."`, `"5.4.5"`), if any.
    enhanced: Option<&'static str>,
    /// Lowercase text fragments; one of them must occur (empty: none needed).
    texts: &'static [&'static str],
    known: Known,
}

static TABLE: &[Entry] = &[
    Entry {
        codes: &[550],
        enhanced: Some("5.4.5"),
        texts: &[],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the account's daily sending quota is used up; the rest waits for \
                          another relay or a later run",
            source: "Google Workspace Admin Help: Gmail sending limits (550 5.4.5)",
        },
    },
    Entry {
        codes: &[421, 450, 451, 452],
        enhanced: Some("4.7."),
        texts: &[],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the server is rate-limiting this sender; the message is sent later",
            source: "RFC 3463 §3.8 (X.7.X security or policy status), as Gmail and Outlook use it",
        },
    },
];

/// What `reply` is known to mean, if it is in the table.
pub fn explain(reply: &Reply) -> Option<Known> {
    let text = reply.text().to_lowercase();
    let enhanced = reply.enhanced.map(|e| e.to_string());
    TABLE
        .iter()
        .find(|e| {
            (e.codes.is_empty() || e.codes.contains(&reply.code))
                && e.enhanced
                    .is_none_or(|p| enhanced.as_deref().is_some_and(|c| c.starts_with(p)))
                && (e.texts.is_empty() || e.texts.iter().any(|t| text.contains(t)))
        })
        .map(|e| e.known)
}

/// Whether `reply` says the account or connection is over a limit.
pub fn is_limit(reply: &Reply) -> bool {
    explain(reply).is_some_and(|k| k.meaning == Meaning::Limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::EnhancedCode;

    fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Reply {
        Reply {
            code,
            enhanced: enhanced.map(|(class, subject, detail)| EnhancedCode {
                class,
                subject,
                detail,
            }),
            lines: vec![text.into()],
        }
    }

    #[test]
    fn gmail_daily_quota_is_a_limit_not_a_rejection() {
        let r = reply(
            550,
            Some((5, 4, 5)),
            "Daily user sending quota exceeded. abc.123 - gsmtp",
        );
        assert!(is_limit(&r));
    }

    #[test]
    fn an_unknown_user_is_not_a_limit() {
        let r = reply(550, Some((5, 1, 1)), "No such user");
        assert!(!is_limit(&r));
        assert_eq!(explain(&r), None);
    }
}
