//! SMTP: client.
