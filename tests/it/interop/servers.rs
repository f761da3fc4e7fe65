//! The fixtures behind one interface, so every check runs against each server.

use std::path::PathBuf;

use crate::support::exim::Exim;
use crate::support::haraka::Haraka;
use crate::support::recording::Copy;
use crate::support::smtp_server::SmtpServer;

/// What the tests need from each server fixture.
pub trait Server {
    /// The server's name in messages and in the figures file.
    const NAME: &'static str;
    /// A private instance accepting `user`/`password`.
    fn start(user: &str, password: &str) -> Self;
    /// The listener that offers STARTTLS.
    fn starttls_port(&self) -> u16;
    /// The implicit-TLS listener.
    fn tls_port(&self) -> u16;
    /// The CA that signed its certificate.
    fn ca_pem(&self) -> String;
    /// That CA as a file, for the job's `ca_file`.
    fn ca_file(&self) -> PathBuf;
    /// Refuses these recipients with these codes from now on.
    fn set_refusals(&self, refusals: &[(&str, u16)]);
    /// Every copy stored so far, one per envelope recipient.
    fn copies(&self) -> Vec<Copy>;
}

macro_rules! server {
    ($ty:ty, $name:literal) => {
        impl Server for $ty {
            const NAME: &'static str = $name;
            fn start(user: &str, password: &str) -> Self {
                <$ty>::start(user, password)
            }
            fn starttls_port(&self) -> u16 {
                <$ty>::starttls_port(self)
            }
            fn tls_port(&self) -> u16 {
                <$ty>::tls_port(self)
            }
            fn ca_pem(&self) -> String {
                <$ty>::ca_pem(self).to_owned()
            }
            fn ca_file(&self) -> PathBuf {
                <$ty>::ca_file(self)
            }
            fn set_refusals(&self, refusals: &[(&str, u16)]) {
                <$ty>::set_refusals(self, refusals)
            }
            fn copies(&self) -> Vec<Copy> {
                <$ty>::copies(self)
            }
        }
    };
}

server!(Exim, "exim");
server!(Haraka, "haraka");
server!(SmtpServer, "smtp-server");
