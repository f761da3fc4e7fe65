//! SMTP: tls.
