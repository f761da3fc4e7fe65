//! An IMAP4rev1 client core without I/O (RFC 3501), on the imap-codec
//! crate's parser and encoder, with STARTTLS, SASL-IR (RFC 4959), ID
//! (RFC 2971), MOVE (RFC 6851) and UIDPLUS (RFC 4315).

pub mod client;
