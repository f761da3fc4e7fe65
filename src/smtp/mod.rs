//! SMTP: the client's protocol core without I/O (`reply`, `command`,
//! `capabilities`, `client`, `bytes`, `data`, `auth`, `redact`), the table of replies
//! that mean more than their code (`known_replies`), the only socket code of
//! the client (`net`), and the server side of the grammar (`server`).

pub mod auth;
pub mod bytes;
pub mod capabilities;
pub mod client;
pub mod command;
pub mod data;
pub mod known_replies;
pub mod net;
pub mod redact;
pub mod reply;
pub mod server;
