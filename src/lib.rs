//! mailshot — a scriptable batch mailer.
//!
//! A YAML job plus a CSV recipient list feed minijinja templates that render
//! one MIME message per recipient; the messages go out over reused SMTP
//! sessions that pipeline MAIL/RCPT/DATA (RFC 2920) and use BDAT (RFC 3030)
//! where offered. The data flows one way through the modules below:
//! `job` → `compose` (recipients, render, mime) → `delivery` (dispatch,
//! journal, report) → `smtp` (protocol core + connection driver).

pub mod address;
pub mod app;
pub mod capture;
pub mod cli;
pub mod compose;
pub mod delivery;
pub mod dns;
pub mod error;
pub mod job;
pub mod mailbox;
pub mod outputs;
pub mod queue;
pub mod smtp;
pub mod suppression;
#[cfg(test)]
mod test_alloc;
