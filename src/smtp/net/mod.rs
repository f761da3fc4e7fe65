//! The only socket code under the SMTP client: the session driver that runs
//! the protocol core over TCP or TLS with RFC 5321 timeouts (`session`), the
//! socket drained by its own thread for RFC 2920 pipelining (`duplex`), the
//! rustls configuration (`tls`) and the protocol trace (`trace`).

pub mod duplex;
pub mod session;
pub mod tls;
pub mod trace;
