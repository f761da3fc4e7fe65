//! The argument of MAIL and RCPT (RFC 5321 4.1.1.2, 4.1.1.3, 4.1.2): the
//! path between angle brackets, an obsolete source route dropped, and the
//! ESMTP parameters after it (RFC 5321 4.1.2 `Mail-parameters`).

/// A path and the parameters that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArg {
    /// The address, without brackets or source route; empty for the null
    /// reverse-path `<>`.
    pub path: String,
    /// The parameters after the closing bracket, trimmed.
    pub params: String,
}

impl PathArg {
    /// The parameters as `(keyword, value)`, the value empty when absent.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .split_whitespace()
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }
}

/// The argument of `MAIL`: `FROM:<path> params`.
pub fn mail_from(arg: &str) -> Option<PathArg> {
    parse(arg, "FROM:")
}

/// The argument of `RCPT`: `TO:<path> params`.
pub fn rcpt_to(arg: &str) -> Option<PathArg> {
    parse(arg, "TO:")
}

/// Splits `KEYWORD<path> params`. The keyword matches without case and a
/// space after its colon is tolerated, as most servers do; the parameters
/// must be set off by a space.
fn parse(arg: &str, keyword: &str) -> Option<PathArg> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let close = rest.find('>')?;
    let mut path = &rest[..close];
    let params = &rest[close + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // RFC 5321 4.1.2: an obsolete source route "@a,@b:" is ignored.
    if path.starts_with('@') {
        path = &path[path.find(':')? + 1..];
    }
    Some(PathArg {
        path: path.to_owned(),
        params: params.trim().to_owned(),
    })
}

/// A loose mailbox check: local@domain with no spaces or control characters.
pub fn is_mailbox(path: &str) -> bool {
    match path.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !path.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(path: &str, params: &str) -> Option<PathArg> {
        Some(PathArg {
            path: path.into(),
            params: params.into(),
        })
    }

    #[test]
    fn paths_parse() {
        assert_eq!(mail_from("FROM:<a@b.c> SIZE=10"), arg("a@b.c", "SIZE=10"));
        assert_eq!(mail_from("from: <>"), arg("", ""));
        assert_eq!(rcpt_to("TO:<@relay.example:u@x.y>"), arg("u@x.y", ""));
        assert_eq!(
            rcpt_to("to:<@a,@b:u@x.y>  NOTIFY=NEVER "),
            arg("u@x.y", "NOTIFY=NEVER")
        );
        assert_eq!(rcpt_to("TO:u@x.y"), None);
        assert_eq!(rcpt_to("TO:<u@x.y>junk"), None);
        assert_eq!(mail_from("FROM:<a@b"), None);
        assert_eq!(mail_from("TO:<a@b>"), None);
        assert_eq!(rcpt_to("FROM:<a@b>"), None);
        assert_eq!(mail_from("FRO"), None);
        assert_eq!(rcpt_to("TO:<@relay.example>"), None);
    }

    #[test]
    fn parameters_split_into_keyword_and_value() {
        let a = mail_from("FROM:<a@b.c> SIZE=10  BODY=8BITMIME SMTPUTF8").unwrap();
        let params: Vec<_> = a.params().collect();
        assert_eq!(
            params,
            [("SIZE", "10"), ("BODY", "8BITMIME"), ("SMTPUTF8", "")]
        );
        assert_eq!(mail_from("FROM:<>").unwrap().params().count(), 0);
    }

    #[test]
    fn mailboxes() {
        assert!(is_mailbox("a@b"));
        assert!(is_mailbox("用户@例子.中国"));
        assert!(!is_mailbox("ab"));
        assert!(!is_mailbox("a b@c"));
        assert!(!is_mailbox("@c"));
        assert!(!is_mailbox("a@"));
        assert!(!is_mailbox("a\u{7}@c"));
    }
}
