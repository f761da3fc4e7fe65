//! SMTP: command.
