//! The built-in capture SMTP server.
