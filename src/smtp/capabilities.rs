//! SMTP: capabilities.
