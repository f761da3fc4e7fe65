//! The integration test binary: runs the built `mailshot` program in temp
//! folders against real servers on loopback (the capture server, the
//! project's scripted fault server, a private Postfix, aiosmtpd for AUTH,
//! and in `interop` Exim, Haraka and nodemailer's smtp-server).

#[path = "../support/mod.rs"]
mod support;

mod bounces;
mod bounces_made;
mod capture;
mod cli;
mod everyday;
mod generate;
mod interop;
mod mailbox;
mod protocol;
mod run;
mod sendmail;
mod smtp;
