//! AUTH as a server reads it (RFC 4954): the command's argument, the LOGIN
//! prompts, and the decoded responses of PLAIN (RFC 4616 2) and XOAUTH2
//! (Google/Microsoft bearer tokens) taken apart into user and secret.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// The LOGIN mechanism's first prompt: base64 of `Username:`.
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// The LOGIN mechanism's second prompt: base64 of `Password:`.
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// The argument of `AUTH mechanism [initial-response]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthArg<'a> {
    /// The mechanism's name, upper-cased; empty when the argument was.
    pub mechanism: String,
    /// The initial response as sent (base64, or `=` for an empty one).
    pub initial: Option<&'a str>,
}

impl<'a> AuthArg<'a> {
    /// Parses the argument; `None` when more than two words follow `AUTH`.
    pub fn parse(arg: &'a str) -> Option<AuthArg<'a>> {
        let mut words = arg.split_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next();
        if words.next().is_some() {
            return None;
        }
        Some(AuthArg { mechanism, initial })
    }
}

/// A client's base64 response decoded; `None` if it is not base64.
pub fn decode(response: &str) -> Option<Vec<u8>> {
    B64.decode(response.trim()).ok()
}

/// `authzid NUL authcid NUL passwd` → (authcid, passwd); `None` unless
/// exactly that shape.
pub fn plain(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    match parts[..] {
        [_, user, pass] => Some((user.to_vec(), pass.to_vec())),
        _ => None,
    }
}

/// `user=U\x01auth=Bearer T\x01\x01` → (U, T); `None` unless exactly that shape.
pub fn xoauth2(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = bytes.strip_suffix(b"\x01\x01")?;
    let (user, auth) = {
        let mut parts = rest.splitn(2, |&b| b == 1);
        (parts.next()?, parts.next()?)
    };
    let user = user.strip_prefix(b"user=")?;
    let token = auth.strip_prefix(b"auth=Bearer ")?;
    if token.contains(&1) || user.is_empty() || token.is_empty() {
        return None;
    }
    Some((user.to_vec(), token.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        let a = AuthArg::parse("plain AGEAYg==").unwrap();
        assert_eq!(
            (a.mechanism.as_str(), a.initial),
            ("PLAIN", Some("AGEAYg=="))
        );
        let a = AuthArg::parse(" LOGIN ").unwrap();
        assert_eq!((a.mechanism.as_str(), a.initial), ("LOGIN", None));
        assert_eq!(AuthArg::parse("").unwrap().mechanism, "");
        assert_eq!(AuthArg::parse("PLAIN a b"), None);
    }

    #[test]
    fn login_prompts_ask_for_user_then_password() {
        assert_eq!(decode(LOGIN_USERNAME_PROMPT).unwrap(), b"Username:");
        assert_eq!(decode(LOGIN_PASSWORD_PROMPT).unwrap(), b"Password:");
        assert_eq!(decode(" dXNlcg== ").unwrap(), b"user");
        assert_eq!(decode("not base64!"), None);
    }

    #[test]
    fn plain_responses_take_apart_at_the_nuls() {
        assert_eq!(
            plain(b"\0user\0pw"),
            Some((b"user".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(
            plain(b"admin\0user\0pw"),
            Some((b"user".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(plain(b"\0user"), None);
        assert_eq!(plain(b"\0a\0b\0c"), None);
        assert_eq!(plain(b""), None);
    }

    #[test]
    fn xoauth2_responses_have_one_shape() {
        assert_eq!(
            xoauth2(b"user=u@x.test\x01auth=Bearer tok\x01\x01"),
            Some((b"u@x.test".to_vec(), b"tok".to_vec()))
        );
        assert_eq!(xoauth2(b"user=u@x.test\x01auth=Bearer tok\x01"), None);
        assert_eq!(xoauth2(b"user=\x01auth=Bearer tok\x01\x01"), None);
        assert_eq!(xoauth2(b"user=u\x01auth=Bearer \x01\x01"), None);
        assert_eq!(xoauth2(b"user=u\x01auth=Basic tok\x01\x01"), None);
        assert_eq!(xoauth2(b"user=u\x01auth=Bearer t\x01k\x01\x01"), None);
    }
}
