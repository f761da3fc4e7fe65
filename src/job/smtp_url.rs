//! `smtps://`, `smtp://` and `smtp+plain://` URLs into SMTP settings.
