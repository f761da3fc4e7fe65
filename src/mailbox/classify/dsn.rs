//! The fields of a `message/delivery-status` body (RFC 3464 §2) and of a
//! `message/feedback-report` body (RFC 5965 §3.1): header-like `Name: value`
//! lines, folded as in RFC 5322 §2.2.3, in groups separated by blank lines.
//! In a DSN the first group holds the per-message fields and each further
//! group one recipient's fields (RFC 3464 §2.1).

/// One group of fields, names lower-cased, values unfolded and trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of a field, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a report body into its groups of fields.
pub fn parse_groups(body: &str) -> Vec<Fields> {
    let mut groups = Vec::new();
    let mut current = Fields::default();
    for line in body.lines() {
        if line.trim().is_empty() {
            if !current.0.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous field.
            if let Some((_, v)) = current.0.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                current
                    .0
                    .push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    if !current.0.is_empty() {
        groups.push(current);
    }
    groups
}

/// The value of a typed field such as `rfc822; user@example.com`
/// (RFC 3464 §2.3.1) or `smtp; 550 5.1.1 ...` (§2.3.6): what follows the
/// type and `;`, trimmed. A value without a type is returned whole.
pub fn typed_value(value: &str) -> &str {
    match value.split_once(';') {
        Some((ty, rest)) if !ty.trim().is_empty() && !ty.trim().contains(' ') => rest.trim(),
        _ => value.trim(),
    }
}

/// An RFC 3463 status code `class.subject.detail` at the start of `text`
/// (class 2, 4 or 5; subject and detail of 1 to 3 digits).
pub fn status_code(text: &str) -> Option<String> {
    let code = text
        .trim()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()?;
    let mut parts = code.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3))
    .then(|| code.to_string())
}

/// The first RFC 3463 code anywhere in `text`, of class 4 or 5: standing
/// alone (not part of a longer number or a dotted version or address).
pub fn find_status_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    for i in 0..b.len() {
        if !matches!(b[i], b'4' | b'5') || b.get(i + 1) != Some(&b'.') {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.') {
            continue;
        }
        let mut j = i + 2;
        let mut groups = 0;
        loop {
            let start = j;
            while j < b.len() && b[j].is_ascii_digit() && j - start < 4 {
                j += 1;
            }
            if j == start || j - start > 3 {
                break;
            }
            groups += 1;
            if groups == 2 {
                break;
            }
            if b.get(j) != Some(&b'.') {
                break;
            }
            j += 1;
        }
        if groups != 2 {
            continue;
        }
        let next = b.get(j).copied();
        let next2 = b.get(j + 1).copied();
        let ends = match next {
            None => true,
            Some(c) if c.is_ascii_alphanumeric() => false,
            // "5.1.1." ends a sentence; "5.1.1.2" is something else.
            Some(b'.') => !next2.is_some_and(|c| c.is_ascii_digit()),
            Some(_) => true,
        };
        if ends {
            return Some(text[i..j].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_unfold_and_lowercase() {
        let body = "Reporting-MTA: dns; mx.example.net\r\n\
                    Original-Envelope-Id: 20261207.42\r\n\r\n\
                    Final-Recipient: rfc822; nobody@example.org\r\n\
                    Action: failed\r\nStatus: 5.1.1\r\n\
                    Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>:\r\n\
                    \x20   Recipient address rejected\r\n\r\n\r\n\
                    Final-Recipient: rfc822;b@example.org\r\nAction: delayed\r\n";
        let g = parse_groups(body);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].get("original-envelope-id"), Some("20261207.42"));
        assert_eq!(g[1].get("ACTION"), Some("failed"));
        assert_eq!(
            g[1].get("diagnostic-code"),
            Some("smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected")
        );
        assert_eq!(
            g[2].get("final-recipient").map(typed_value),
            Some("b@example.org")
        );
    }

    #[test]
    fn typed_values() {
        assert_eq!(typed_value("rfc822; a@b.org"), "a@b.org");
        assert_eq!(typed_value("rfc822;a@b.org"), "a@b.org");
        assert_eq!(typed_value("a@b.org"), "a@b.org");
        assert_eq!(typed_value("smtp; 550 no; really"), "550 no; really");
        assert_eq!(typed_value("550 no; really"), "550 no; really");
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code("5.1.1").as_deref(), Some("5.1.1"));
        assert_eq!(
            status_code(" 4.4.7 (delivery time expired)").as_deref(),
            Some("4.4.7")
        );
        assert_eq!(status_code("5.7.1000").as_deref(), None);
        assert_eq!(status_code("3.1.1"), None);
        assert_eq!(status_code("5.1"), None);
        assert_eq!(status_code("5.1.1.1"), None);
    }

    #[test]
    fn codes_found_in_text() {
        let f = |t: &str| find_status_code(t);
        assert_eq!(
            f("said: 550 5.1.1 <a@b>: User unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            f("452-4.2.2 The email account is over quota.").as_deref(),
            Some("4.2.2")
        );
        assert_eq!(f("status 5.2.2.").as_deref(), Some("5.2.2"));
        assert_eq!(f("Postfix 3.5.1 on host 10.4.5.6"), None);
        assert_eq!(f("version v5.1.1"), None);
        assert_eq!(f("2.0.0 Ok"), None);
        assert_eq!(f("5.1.1"), Some("5.1.1".into()));
        assert_eq!(f("5.1.1234"), None);
        assert_eq!(f("5."), None);
    }
}
