//! Reading the mailbox that receives bounces, complaints and unsubscribe
//! requests: a POP3 core (RFC 1939), an IMAP4rev1 core (RFC 3501) and the
//! classification of what arrives (RFC 3464 delivery status notifications,
//! RFC 5965 feedback reports, RFC 3834 auto-replies).
//!
//! Everything here except `net` (the socket driver) is bytes in, values out.

pub mod classify;
pub mod imap;
pub mod net;
pub mod pop3;
pub mod reader;
pub mod record;
pub mod seen;
