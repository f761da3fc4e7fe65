//! Replies that mean more than their code: one table ([`table`]) of the texts
//! that say the sending account or connection is over a limit (which pause a
//! relay instead of failing the recipient), content rejections, and provider
//! replies worth a one-line explanation. Each entry names its source, and
//! `docs/providers.md` lists the same entries (a test keeps the two equal).
//!
//! A limit reply never marks a recipient rejected: the message goes back
//! to the queue, for another relay or for later.

mod table;
#[cfg(test)]
mod tests;

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

impl Meaning {
    /// The word used in `docs/providers.md` and the JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Meaning::Limit => "limit",
            Meaning::Content => "content",
            Meaning::Other => "other",
        }
    }
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
    /// Whose reply it is, for the documentation ("Gmail", "any server").
    provider: &'static str,
    /// A reply as the provider sends it; the entry must recognise it.
    example: &'static str,
    /// Reply codes it applies to (empty: any).
    codes: &'static [u16],
    /// Enhanced status code it applies to: a prefix when it ends with a dot
    /// (`"4.7."`), else the exact code (`"5.4.5"`).
    enhanced: Option<&'static str>,
    /// Lowercase text fragments; one of them must occur (empty: none needed).
    texts: &'static [&'static str],
    known: Known,
}

impl Entry {
    fn matches(&self, code: Option<u16>, enhanced: Option<&str>, lower_text: &str) -> bool {
        let code_ok = self.codes.is_empty() || code.is_some_and(|c| self.codes.contains(&c));
        let enhanced_ok = self.enhanced.is_none_or(|want| {
            enhanced.is_some_and(|got| match want.strip_suffix('.') {
                Some(_) => got.starts_with(want),
                None => got == want,
            })
        });
        let text_ok = self.texts.is_empty() || self.texts.iter().any(|t| lower_text.contains(t));
        code_ok && enhanced_ok && text_ok
    }
}

/// What `reply` is known to mean, if it is in the table.
pub fn explain(reply: &Reply) -> Option<Known> {
    let enhanced = reply.enhanced.map(|e| e.to_string());
    explain_parts(Some(reply.code), enhanced.as_deref(), &reply.text())
}

/// [`explain`] for a reply already taken apart, as the report and the
/// journal keep it: the code, the enhanced code (`"5.4.5"`) and the text.
pub fn explain_parts(code: Option<u16>, enhanced: Option<&str>, text: &str) -> Option<Known> {
    let lower = text.to_lowercase();
    table::TABLE
        .iter()
        .find(|e| e.matches(code, enhanced, &lower))
        .map(|e| e.known)
}

/// Every entry as `docs/providers.md` shows it: the provider, an example
/// reply as that provider sends it, and what it means, in table order.
pub fn entries() -> impl Iterator<Item = (&'static str, &'static str, Known)> {
    table::TABLE
        .iter()
        .map(|e| (e.provider, e.example, e.known))
}

/// Whether `reply` says the account or connection is over a limit.
pub fn is_limit(reply: &Reply) -> bool {
    explain(reply).is_some_and(|k| k.meaning == Meaning::Limit)
}
