//! SMTP: connection.
