//! A POP3 client core without I/O: RFC 1939 (USER/PASS, STAT, LIST, UIDL,
//! TOP, RETR, DELE, QUIT), RFC 2449 (CAPA, extended response codes),
//! RFC 2595 §4 (STLS) and RFC 5034 (SASL AUTH PLAIN, LOGIN, XOAUTH2).

pub mod client;
pub mod command;
pub mod response;
