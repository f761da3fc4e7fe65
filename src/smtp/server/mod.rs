//! The server side of the SMTP grammar (RFC 5321), without I/O: command
//! lines parsed into a verb and its argument (`request`), MAIL and RCPT paths
//! with their parameters (`path`), the DATA body with its dot-stuffing
//! removed (`data`), BDAT chunks taken by their announced length (`bdat`,
//! RFC 3030), AUTH arguments and responses (`auth`, RFC 4954) and the shape
//! of multiline replies (`reply`). The capture server and the test fault
//! server build on it; what they answer, and when, stays theirs.

pub mod auth;
pub mod bdat;
pub mod data;
pub mod path;
pub mod reply;
pub mod request;
