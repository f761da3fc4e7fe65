//! The SMTP client: a protocol core without I/O (`reply`, `command`,
//! `capabilities`, `client`, `data`, `auth`) and the only socket code
//! (`tls`, `connection`).

pub mod auth;
pub mod capabilities;
pub mod client;
pub mod command;
pub mod connection;
pub mod data;
pub mod duplex;
pub mod redact;
pub mod reply;
pub mod tls;
