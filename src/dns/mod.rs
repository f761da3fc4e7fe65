//! Where a recipient domain's mail goes when mailshot delivers directly
//! (RFC 5321 §5.1): the MX records in preference order, shuffled among
//! equal preferences, the implicit MX (the domain's own A/AAAA) when there
//! is none, null MX (RFC 7505) and a domain that does not exist as
//! permanent failures, and a DNS server that cannot answer as a temporary
//! one. `order` is the pure selection; `resolve` asks a DNS server
//! (hickory-resolver) and turns the answers into candidates to try.

pub mod order;
pub mod resolve;

use std::net::IpAddr;

use crate::smtp::reply::{EnhancedCode, Reply};

pub use order::{order_hosts, MxRecord};
pub use resolve::MxResolver;

/// One place to try: an MX host's name, one of its addresses, and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The MX host name as the DNS answered it (no trailing dot), or the
    /// domain itself for the implicit MX.
    pub host: String,
    /// One address of that host.
    pub ip: IpAddr,
    /// The SMTP port (25 unless the job says otherwise).
    pub port: u16,
}

/// Why a domain has no candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    /// The domain takes no mail and never will: null MX, no such domain, or
    /// no address for any of its hosts. Its recipients are rejected.
    Permanent(Reply),
    /// The DNS could not answer now (SERVFAIL, timeout, refused): try
    /// again after the retry delay.
    Temporary(Reply),
}

impl DnsFailure {
    /// The reply a report row shows for this failure.
    pub fn reply(&self) -> &Reply {
        match self {
            DnsFailure::Permanent(r) | DnsFailure::Temporary(r) => r,
        }
    }

    /// Whether retrying later may help.
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsFailure::Temporary(_))
    }
}

/// A reply as a report shows it, for an outcome mailshot decided itself
/// (no server said it): `code`, the enhanced status (RFC 3463) and the text.
fn synthetic(code: u16, (subject, detail): (u16, u16), text: String) -> Reply {
    let mut reply = Reply::new(code, text);
    reply.enhanced = Some(EnhancedCode {
        class: (code / 100) as u8,
        subject,
        detail,
    });
    reply
}

/// The domain publishes a null MX (RFC 7505 §3: 556 and 5.1.10).
pub(crate) fn null_mx(domain: &str) -> DnsFailure {
    DnsFailure::Permanent(synthetic(
        556,
        (1, 10),
        format!("domain {domain} does not accept mail (null MX, RFC 7505)"),
    ))
}

/// The domain does not exist (NXDOMAIN).
pub(crate) fn no_such_domain(domain: &str) -> DnsFailure {
    DnsFailure::Permanent(synthetic(
        550,
        (1, 2),
        format!("domain {domain} does not exist (DNS: NXDOMAIN)"),
    ))
}

/// The recipient's domain is not a domain name (bad IDN, address literal).
pub(crate) fn not_a_domain(domain: &str) -> DnsFailure {
    DnsFailure::Permanent(synthetic(
        553,
        (1, 3),
        format!("{domain:?} is not a domain name whose mail servers can be looked up"),
    ))
}

/// Neither an MX nor an address record, or no MX host has an address.
pub(crate) fn no_address(domain: &str, what: &str) -> DnsFailure {
    DnsFailure::Permanent(synthetic(
        550,
        (1, 2),
        format!("domain {domain} has no mail server: {what}"),
    ))
}

/// The DNS could not answer now.
pub(crate) fn dns_unavailable(domain: &str, why: &str) -> DnsFailure {
    DnsFailure::Temporary(synthetic(
        451,
        (4, 3),
        format!("cannot look up the mail servers of {domain} now: {why}"),
    ))
}
