//! Composing messages: prepared rows (`prepare`) read from the recipient list
//! (`recipients`), rendered from templates into a [`message::Draft`]
//! (`render`), built into RFC 5322 / MIME (RFC 2045–2049) bytes (`mime`)
//! with addresses checked by [`crate::address`] and an
//! optional DKIM signature (`dkim`, RFC 6376).

pub mod dkim;
pub mod message;
pub mod mime;
pub mod parallel;
pub mod prepare;
pub mod recipients;
pub mod render;
pub mod seen;
pub mod submitted;
