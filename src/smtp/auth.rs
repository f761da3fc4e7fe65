//! SASL client steps for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login) and XOAUTH2 (Google/Microsoft bearer
//! tokens). Pure functions from credentials and challenges to the base64
//! lines to send; the session state machine sends them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// SASL mechanism to use; `None` where a choice is optional means the best
/// one offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    /// RFC 4616 PLAIN.
    Plain,
    /// The LOGIN mechanism (Base64 user, then password, after 334 prompts).
    Login,
    /// XOAUTH2 bearer token (Gmail, Outlook).
    XOAuth2,
}

/// The mechanism's name as it appears in `AUTH` and in the EHLO reply.
pub fn mechanism_name(mech: AuthMech) -> &'static str {
    match mech {
        AuthMech::Plain => "PLAIN",
        AuthMech::Login => "LOGIN",
        AuthMech::XOAuth2 => "XOAUTH2",
    }
}

/// Picks the mechanism to use from the server's offer (upper-case names).
/// A forced mechanism is used only if offered. Otherwise PLAIN, then LOGIN;
/// XOAUTH2 needs a token rather than a password, so only when forced.
pub fn choose(offered: &[String], forced: Option<AuthMech>) -> Option<AuthMech> {
    let offers = |m: AuthMech| {
        offered
            .iter()
            .any(|o| o.eq_ignore_ascii_case(mechanism_name(m)))
    };
    match forced {
        Some(m) => offers(m).then_some(m),
        None => [AuthMech::Plain, AuthMech::Login]
            .into_iter()
            .find(|&m| offers(m)),
    }
}

/// PLAIN initial response: base64 of `\0user\0pass` (RFC 4616 §2, empty
/// authorization identity).
pub fn plain_initial(username: &str, password: &str) -> String {
    B64.encode(format!("\0{username}\0{password}"))
}

/// XOAUTH2 initial response: base64 of `user=U\x01auth=Bearer T\x01\x01`.
pub fn xoauth2_initial(username: &str, token: &str) -> String {
    B64.encode(format!("user={username}\x01auth=Bearer {token}\x01\x01"))
}

/// One SASL exchange from the client side.
pub struct SaslClient {
    mech: AuthMech,
    username: String,
    secret: String,
    /// 334 challenges answered so far.
    steps: usize,
}

impl std::fmt::Debug for SaslClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslClient")
            .field("mech", &self.mech)
            .field("username", &self.username)
            .field("secret", &"***")
            .field("steps", &self.steps)
            .finish()
    }
}

impl SaslClient {
    /// Starts an exchange; `secret` is the password, or the token for XOAUTH2.
    pub fn new(mech: AuthMech, username: &str, secret: &str) -> Self {
        SaslClient {
            mech,
            username: username.to_string(),
            secret: secret.to_string(),
            steps: 0,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> AuthMech {
        self.mech
    }

    /// The initial response sent with `AUTH` (none for LOGIN, which waits
    /// for its prompts).
    pub fn initial_response(&self) -> Option<String> {
        match self.mech {
            AuthMech::Plain => Some(plain_initial(&self.username, &self.secret)),
            AuthMech::Login => None,
            AuthMech::XOAuth2 => Some(xoauth2_initial(&self.username, &self.secret)),
        }
    }

    /// Whether a 334 challenge can still be part of this exchange: LOGIN
    /// has two prompts; PLAIN sends everything in its initial response;
    /// XOAUTH2 gets at most one challenge, carrying its error.
    pub fn expects_challenge(&self) -> bool {
        match self.mech {
            AuthMech::Login => self.steps < 2,
            AuthMech::Plain => false,
            AuthMech::XOAuth2 => self.steps < 1,
        }
    }

    /// The line answering a 334 challenge (its base64 text, unused: LOGIN
    /// servers word their prompts differently, so the order decides).
    pub fn respond(&mut self, _challenge: &str) -> String {
        self.steps += 1;
        match (self.mech, self.steps) {
            (AuthMech::Login, 1) => B64.encode(&self.username),
            (AuthMech::Login, 2) => B64.encode(&self.secret),
            // XOAUTH2 sends a base64 JSON error as a challenge; an empty line
            // makes the server finish with its 535.
            (AuthMech::XOAuth2, _) => String::new(),
            // An unexpected extra challenge: cancel (RFC 4954 §4).
            _ => "*".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn choose_prefers_plain_then_login_and_honours_forced() {
        let all = offered(&["LOGIN", "PLAIN", "XOAUTH2"]);
        assert_eq!(choose(&all, None), Some(AuthMech::Plain));
        assert_eq!(
            choose(&offered(&["LOGIN", "CRAM-MD5"]), None),
            Some(AuthMech::Login)
        );
        assert_eq!(choose(&offered(&["XOAUTH2"]), None), None);
        assert_eq!(
            choose(&all, Some(AuthMech::XOAuth2)),
            Some(AuthMech::XOAuth2)
        );
        assert_eq!(choose(&all, Some(AuthMech::Login)), Some(AuthMech::Login));
        assert_eq!(choose(&offered(&["PLAIN"]), Some(AuthMech::Login)), None);
        assert_eq!(choose(&[], None), None);
        assert_eq!(choose(&offered(&["plain"]), None), Some(AuthMech::Plain));
    }

    #[test]
    fn plain_is_rfc4616() {
        // RFC 4616 §4 example payload "\0tim\0tanstaaftanstaaf".
        assert_eq!(
            plain_initial("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        let c = SaslClient::new(AuthMech::Plain, "tim", "tanstaaftanstaaf");
        assert_eq!(
            c.initial_response().as_deref(),
            Some("AHRpbQB0YW5zdGFhZnRhbnN0YWFm")
        );
    }

    #[test]
    fn login_answers_user_then_password_then_cancels() {
        let mut c = SaslClient::new(AuthMech::Login, "me@163.com", "s3cret");
        assert_eq!(c.initial_response(), None);
        assert_eq!(c.respond("VXNlcm5hbWU6"), "bWVAMTYzLmNvbQ==");
        assert_eq!(c.respond("UGFzc3dvcmQ6"), "czNjcmV0");
        assert_eq!(c.respond("???"), "*");
    }

    #[test]
    fn xoauth2_initial_and_error_challenge() {
        let mut c = SaslClient::new(AuthMech::XOAuth2, "someuser@example.com", "ya29.vF9dft4q");
        // The example from Google's XOAUTH2 protocol documentation.
        assert_eq!(
            c.initial_response().as_deref(),
            Some("dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxAQE=")
        );
        assert_eq!(c.respond("eyJzdGF0dXMiOiI0MDEifQ=="), "");
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = SaslClient::new(AuthMech::Plain, "u", "hunter2");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
    }
}
