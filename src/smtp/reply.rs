//! SMTP: reply.
