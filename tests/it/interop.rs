//! The interop matrix: `mailshot run` against three real servers besides
//! Postfix and aiosmtpd — Exim 4.96, Haraka 3 and nodemailer's
//! `smtp-server` — each started privately on loopback by its fixture.
//!
//! For each server: STARTTLS with AUTH PLAIN and LOGIN, implicit TLS, 100
//! messages with Cc, Bcc and an attachment over two sessions, refused
//! recipients (5xx, 4xx) and a rerun once the 4xx is lifted, and what the
//! server offers with the round trips mailshot needs per message. Everything
//! is judged on the server side (the copies each envelope recipient got),
//! by the report rows and by exit codes.

mod delivery;
mod job;
mod matrix;
mod pace;
mod servers;

use crate::support::exim::Exim;
use crate::support::haraka::Haraka;
use crate::support::smtp_server::SmtpServer;
use delivery::{auth_over_both_tls_modes, hundred_messages_two_sessions, refusals_and_rerun};
use matrix::offers_and_round_trips;
use pace::one_session_keeps_pace;

// ------------------------------------------------------------------ Exim

#[test]
fn exim_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<Exim>();
}

#[test]
fn exim_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<Exim>();
}

#[test]
fn exim_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<Exim>();
}

/// Exim offers CHUNKING: pipelined `BDAT … LAST` needs no wait per message.
#[test]
fn exim_offers_and_round_trips_per_message() {
    offers_and_round_trips::<Exim>((true, true, true), 0.5);
}

// ---------------------------------------------------------------- Haraka

#[test]
fn haraka_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<Haraka>();
}

#[test]
fn haraka_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<Haraka>();
}

#[test]
fn haraka_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<Haraka>();
}

/// Haraka refuses commands pipelined after the final dot: two round trips
/// per message (the body's 354, then the dot's reply), and a little for the
/// proxy's own forwarding.
#[test]
fn haraka_offers_and_round_trips_per_message() {
    offers_and_round_trips::<Haraka>((true, false, true), 2.3);
}

/// Haraka writes each reply of a pipelined group on its own with Nagle's
/// algorithm on: one session still moves hundreds of messages a second.
#[test]
fn haraka_one_session_keeps_pace_on_loopback() {
    one_session_keeps_pace::<Haraka>();
}

// ----------------------------------------------------------- smtp-server

#[test]
fn smtp_server_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<SmtpServer>();
}

#[test]
fn smtp_server_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<SmtpServer>();
}

#[test]
fn smtp_server_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<SmtpServer>();
}

/// No CHUNKING: pipelined DATA waits for its 354, about one round trip.
#[test]
fn smtp_server_offers_and_round_trips_per_message() {
    offers_and_round_trips::<SmtpServer>((true, false, true), 1.6);
}
