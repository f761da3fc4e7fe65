//! The fixtures behind one interface, so every check runs against each server.

use std::path::PathBuf;

use crate::support::exim::Exim;
use crate::support::haraka::Haraka;
use crate::support::recording::{Copy, Listeners};
use crate::support::smtp_server::SmtpServer;

/// What the tests need from each server fixture: its [`Listeners`] (ports,
/// CA, recipient policy) and the copies it stored.
pub trait Server {
    /// The server's name in messages and in the figures file.
    const NAME: &'static str;
    /// A private instance accepting `user`/`password`.
    fn start(user: &str, password: &str) -> Self;
    /// The running server's listeners, CA and folder.
    fn listeners(&self) -> &Listeners;
    /// The listener that offers STARTTLS.
    fn starttls_port(&self) -> u16 {
        self.listeners().starttls_port
    }
    /// The implicit-TLS listener.
    fn tls_port(&self) -> u16 {
        self.listeners().tls_port
    }
    /// The CA that signed its certificate.
    fn ca_pem(&self) -> String {
        self.listeners().ca_pem.clone()
    }
    /// That CA as a file, for the job's `ca_file`.
    fn ca_file(&self) -> PathBuf {
        self.listeners().ca_file()
    }
    /// Refuses these recipients with these codes from now on.
    fn set_refusals(&self, refusals: &[(&str, u16)]) {
        self.listeners().set_refusals(refusals)
    }
    /// Every copy stored so far, one per envelope recipient.
    fn copies(&self) -> Vec<Copy> {
        self.listeners().copies()
    }
}

macro_rules! server {
    ($ty:ty, $name:literal $(, copies: $copies:path)?) => {
        impl Server for $ty {
            const NAME: &'static str = $name;
            fn start(user: &str, password: &str) -> Self {
                <$ty>::start(user, password)
            }
            fn listeners(&self) -> &Listeners {
                self
            }
            $(fn copies(&self) -> Vec<Copy> {
                $copies(self)
            })?
        }
    };
}

server!(Exim, "exim", copies: Exim::copies);
server!(Haraka, "haraka");
server!(SmtpServer, "smtp-server");
