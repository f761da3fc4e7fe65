//! Address syntax: RFC 5322 mailbox lists ("Name <a@b>, c@d") and RFC 5321 /
//! RFC 6531 addr-specs, including internationalised local parts and domains.

use crate::message::Mailbox;

/// Parse a comma-separated list of mailboxes as written in a job template's
/// output (display names optional, quoted names allowed). Rejects CR, LF and
/// other control characters, empty entries and invalid addr-specs.
pub fn parse_mailbox_list(input: &str) -> Result<Vec<Mailbox>, String> {
    let _ = input;
    todo!("address helper")
}

/// Check one addr-spec (`local@domain`) for SMTP use.
pub fn check_addr_spec(addr: &str) -> Result<(), String> {
    let _ = addr;
    todo!("address helper")
}

/// True when the address needs SMTPUTF8 (non-ASCII local part or domain).
pub fn needs_smtputf8(addr: &str) -> bool {
    !addr.is_ascii()
}
