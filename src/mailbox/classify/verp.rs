//! Decoding VERP addresses (variable envelope return paths): given the
//! job's `return_path` template, such as `bounces+{{ row }}@example.com`,
//! recover the row from an address it produced. The same matcher tells
//! whether mail was sent to the `list_unsubscribe` mailto: address, which
//! may itself carry `{{ row }}`.
//!
//! Only the `row` variable can be decoded: it is the one value that is a
//! plain number, so the address fixes it unambiguously.

use std::fmt;

/// A template that is a literal address, or an address with one `{{ row }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPattern {
    /// Text before `{{ row }}` (the whole address when there is none).
    prefix: String,
    /// Text after `{{ row }}`.
    suffix: String,
    /// The template contains `{{ row }}`.
    has_row: bool,
}

/// A template that no address can be decoded from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A variable other than `row`, or an expression, filter or tag.
    #[error("only {{{{ row }}}} can be decoded from an address, not {{{{ {0} }}}}")]
    Unsupported(String),
    /// `{{ row }}` more than once.
    #[error("{{{{ row }}}} appears more than once")]
    Repeated,
    /// A `{{` without its `}}`, or a `{%`/`{#` block.
    #[error("the template is not a plain address with {{{{ row }}}}")]
    Malformed,
}

impl AddressPattern {
    /// Reads a template: literal text plus at most one `{{ row }}` (any
    /// inner spacing, `{{- row -}}` too).
    pub fn new(template: &str) -> Result<Self, PatternError> {
        if template.contains("{%") || template.contains("{#") {
            return Err(PatternError::Malformed);
        }
        let Some(open) = template.find("{{") else {
            if template.contains("}}") {
                return Err(PatternError::Malformed);
            }
            return Ok(AddressPattern {
                prefix: template.trim().to_string(),
                suffix: String::new(),
                has_row: false,
            });
        };
        let rest = &template[open + 2..];
        let close = rest.find("}}").ok_or(PatternError::Malformed)?;
        let inner = rest[..close]
            .trim_matches(|c: char| c == '-' || c.is_whitespace())
            .to_string();
        if inner != "row" {
            return Err(PatternError::Unsupported(inner));
        }
        let suffix = &rest[close + 2..];
        if suffix.contains("{{") {
            let again = AddressPattern::new(suffix)?;
            return Err(if again.has_row {
                PatternError::Repeated
            } else {
                PatternError::Malformed
            });
        }
        if suffix.contains("}}") {
            return Err(PatternError::Malformed);
        }
        Ok(AddressPattern {
            prefix: template[..open].trim_start().to_string(),
            suffix: suffix.trim_end().to_string(),
            has_row: true,
        })
    }

    /// The template contains `{{ row }}`.
    pub fn has_row(&self) -> bool {
        self.has_row
    }

    /// Whether `address` (bare or in `<>`) is one this template produces,
    /// and if so the row it names (`None` for a literal template). Letters
    /// compare without case: mail systems may change the case of a domain,
    /// and some of a local part.
    pub fn matches(&self, address: &str) -> Option<Option<u64>> {
        let addr = address.trim().trim_start_matches('<').trim_end_matches('>');
        if !self.has_row {
            return addr.eq_ignore_ascii_case(&self.prefix).then_some(None);
        }
        let lower = addr.to_ascii_lowercase();
        let middle = lower
            .strip_prefix(&self.prefix.to_ascii_lowercase())?
            .strip_suffix(&self.suffix.to_ascii_lowercase())?;
        // Rows are 1-based decimal numbers as minijinja renders them.
        if middle.is_empty()
            || middle.len() > 19
            || middle.starts_with('0')
            || !middle.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        middle.parse().ok().map(Some)
    }

    /// The row named by `address`, if it is one this template produces.
    pub fn row(&self, address: &str) -> Option<u64> {
        self.matches(address).flatten()
    }
}

impl fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_row {
            write!(f, "{}{{{{ row }}}}{}", self.prefix, self.suffix)
        } else {
            f.write_str(&self.prefix)
        }
    }
}

/// The address of a `mailto:` URL (RFC 6068 §2): what comes before `?`,
/// percent-decoded; `None` for another scheme or more than one address.
pub fn mailto_address(url: &str) -> Option<String> {
    let url = url.trim().trim_start_matches('<').trim_end_matches('>');
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    let to = url[7..].split('?').next()?;
    let mut out = Vec::with_capacity(to.len());
    let bytes = to.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let to = String::from_utf8(out).ok()?;
    (!to.is_empty() && !to.contains(',')).then_some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verp_row_is_recovered_from_the_address_it_produced() {
        let p = AddressPattern::new("bounces+{{ row }}@example.com").unwrap();
        assert!(p.has_row());
        assert_eq!(p.row("bounces+42@example.com"), Some(42));
        assert_eq!(p.row("<bounces+7@example.com>"), Some(7));
        assert_eq!(p.row("Bounces+7@EXAMPLE.com"), Some(7));
        assert_eq!(p.row("bounces+@example.com"), None);
        assert_eq!(p.row("bounces+4x@example.com"), None);
        assert_eq!(
            p.row("bounces+042@example.com"),
            None,
            "minijinja never pads"
        );
        assert_eq!(p.row("bounces+42@example.org"), None);
        assert_eq!(p.row("other+42@example.com"), None);
        assert_eq!(p.row("bounces+99999999999999999999@example.com"), None);
        assert_eq!(p.to_string(), "bounces+{{ row }}@example.com");
    }

    #[test]
    fn spacing_and_whitespace_control_do_not_matter() {
        for t in [
            "b-{{row}}@x.org",
            "b-{{ row }}@x.org",
            "b-{{- row -}}@x.org",
            " b-{{  row\t}}@x.org ",
        ] {
            let p = AddressPattern::new(t).unwrap();
            assert_eq!(p.row("b-12@x.org"), Some(12), "{t}");
        }
        let p = AddressPattern::new("{{ row }}.bounce@x.org").unwrap();
        assert_eq!(p.row("3.bounce@x.org"), Some(3));
    }

    #[test]
    fn a_literal_template_matches_only_itself() {
        let p = AddressPattern::new("unsubscribe@example.com").unwrap();
        assert!(!p.has_row());
        assert_eq!(p.matches("Unsubscribe@Example.com"), Some(None));
        assert_eq!(p.matches("unsubscribe+1@example.com"), None);
        assert_eq!(p.row("unsubscribe@example.com"), None);
    }

    #[test]
    fn templates_that_cannot_be_decoded_are_refused() {
        assert_eq!(
            AddressPattern::new("b+{{ email }}@x.org"),
            Err(PatternError::Unsupported("email".into()))
        );
        assert_eq!(
            AddressPattern::new("b+{{ row }}.{{ row }}@x.org"),
            Err(PatternError::Repeated)
        );
        assert_eq!(
            AddressPattern::new("b+{{ row @x.org"),
            Err(PatternError::Malformed)
        );
        assert_eq!(
            AddressPattern::new("{% if x %}a@b{% endif %}"),
            Err(PatternError::Malformed)
        );
        let msg = PatternError::Unsupported("email".into()).to_string();
        assert_eq!(
            msg,
            "only {{ row }} can be decoded from an address, not {{ email }}"
        );
    }

    #[test]
    fn mailto_urls_give_their_address() {
        assert_eq!(
            mailto_address("mailto:unsubscribe@example.com?subject=unsubscribe").as_deref(),
            Some("unsubscribe@example.com")
        );
        assert_eq!(
            mailto_address("<MAILTO:u%2Bx%40example.com>").as_deref(),
            Some("u+x@example.com")
        );
        assert_eq!(mailto_address("https://example.com/u"), None);
        assert_eq!(mailto_address("mailto:a@x.org,b@x.org"), None);
        assert_eq!(mailto_address("mailto:%zz"), None);
        assert_eq!(mailto_address("mailto:"), None);
    }
}
