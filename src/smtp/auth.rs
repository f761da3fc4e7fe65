//! SMTP: auth.
