//! Address keys (`from`, `reply_to`, `to`, `cc`, `bcc`): every value a
//! template inserts is marked, and the rendered list is parsed so that each
//! value fills exactly one token of one address (RFC 5322 §3.4).

use std::borrow::Cow;

use super::lookup;
use super::marks;
use super::row::RowRender;
use crate::address::Mailbox;
use crate::address::{AddressError, Part};

impl RowRender<'_> {
    /// An address key: rendered, checked, parsed. Blank renders as no address.
    pub(super) fn addresses(&mut self, key: &str) -> Option<Vec<Mailbox>> {
        if let Some(list) = lookup(&self.r.constant_addresses, key) {
            return Some(list.clone());
        }
        let value = self.header_value(key)?;
        let parts = match marks::unmark(&value) {
            Ok(parts) => parts,
            Err(reason) => {
                let d = self.diag_at_key(key, format!("{key}: {reason}"));
                self.diags.push(d);
                return None;
            }
        };
        match crate::address::parse_filled_list(&parts) {
            Ok(list) => Some(list),
            Err(e) => {
                let mut d = self.diag_at_key(key, format!("{key}: invalid address {e}"));
                d.location.field = e.value.and_then(|i| self.column_of_value(&parts, i));
                self.diags.push(d);
                None
            }
        }
    }

    /// The CSV column whose cell is the `index`-th value among `parts`
    /// (none when the value was computed, not looked up).
    pub(super) fn column_of_value(&self, parts: &[Part<'_>], index: usize) -> Option<String> {
        let value = parts
            .iter()
            .filter_map(|p| match p {
                Part::Value(v) => Some(v),
                Part::Text(_) => None,
            })
            .nth(index)?;
        self.rec
            .headers
            .iter()
            .zip(&self.rec.values)
            .find(|(_, v)| *v == value)
            .map(|(h, _)| h.clone())
    }
}

/// The keys whose rendered value is a list of addresses.
pub(super) const ADDRESS_KEYS: [&str; 6] = ["from", "reply_to", "to", "cc", "bcc", "return_path"];

/// The auto-escape mode of address templates.
pub(super) const ADDRESS_ESCAPE: &str = "address";

/// Every value interpolated into an address template is marked (see
/// `marks`), so that parsing the output can hold each value to the one token
/// of one address it fills (see [`crate::address::parse_filled_list`]): a
/// CSV value can never add a recipient or change a domain.
pub(super) fn address_escape(value: &str) -> Cow<'_, str> {
    Cow::Owned(marks::mark(value))
}

pub(super) fn parse_mailbox_list(input: &str) -> std::result::Result<Vec<Mailbox>, AddressError> {
    crate::address::parse_mailbox_list(input)
}
