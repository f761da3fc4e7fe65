//! SMTP: data.
