//! The only socket code under the SMTP client: the session driver that runs
//! the protocol core over TCP or TLS with RFC 5321 timeouts (`session`), the
//! socket drained by its own thread for RFC 2920 pipelining (`duplex`), the
//! rustls configuration (`tls`; `opportunistic` for STARTTLS to MX hosts
//! that accepts any certificate), a socket that may move under TLS
//! (`transport`, shared with the mailbox clients) and the protocol trace
//! (`trace`).

pub mod duplex;
pub mod opportunistic;
pub mod session;
pub mod tls;
pub mod trace;
pub mod transport;
