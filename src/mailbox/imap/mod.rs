//! An IMAP4rev1 client core without I/O (RFC 3501), on the imap-codec
//! crate's parser and encoder, with STARTTLS, SASL-IR (RFC 4959), ID
//! (RFC 2971), MOVE (RFC 6851) and UIDPLUS (RFC 4315); mailbox names in
//! modified UTF-7 (RFC 3501 §5.1.3).

pub mod client;
pub mod mailbox_name;
