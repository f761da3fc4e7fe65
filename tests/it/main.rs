//! The integration test binary: runs the built `mailshot` program in temp
//! folders against real servers on loopback (the capture server, the
//! project's scripted fault server, a private Postfix, aiosmtpd for AUTH).

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod everyday;
mod protocol;
mod run;
mod smtp;
