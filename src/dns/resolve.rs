//! Asking a DNS server for a domain's mail servers: the MX records, then
//! the addresses of each host, with hickory-resolver. Its async API runs on
//! a small current-thread tokio runtime owned here, so the rest of mailshot
//! stays synchronous and no other runtime exists. The server is the one
//! `smtp.resolver` names, else the system's (`/etc/resolv.conf`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use super::order::{self, Hosts, MxRecord};
use super::{
    dns_unavailable, no_address, no_such_domain, not_a_domain, null_mx, Candidate, DnsFailure,
};
use crate::error::{Error, Result};

/// How long one DNS question may take before it counts as a temporary
/// failure (the resolver's own retries included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds the candidates for a recipient domain.
pub struct MxResolver {
    runtime: tokio::runtime::Runtime,
    resolver: TokioResolver,
    port: u16,
}

/// What one lookup found.
enum Found<T> {
    Records(T),
    /// The name exists but has no records of that type.
    NoRecords,
    /// The name does not exist.
    NoDomain,
}

impl MxResolver {
    /// A resolver asking `server` (UDP, then TCP when an answer is
    /// truncated), or the system's servers when `None`; candidates get
    /// `port`.
    pub fn new(server: Option<SocketAddr>, port: u16) -> Result<MxResolver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Software(format!("cannot start the DNS resolver: {e}")))?;
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let connection = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    provider,
                );
                // Only the named server answers, not /etc/hosts.
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder(provider).map_err(|e| {
                Error::Unavailable(format!("cannot read the system's DNS configuration: {e}"))
            })?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 1;
        let resolver = {
            let _guard = runtime.enter();
            builder
                .build()
                .map_err(|e| Error::Software(format!("cannot start the DNS resolver: {e}")))?
        };
        Ok(MxResolver {
            runtime,
            resolver,
            port,
        })
    }

    /// The candidates for `domain` in try order (RFC 5321 §5.1), or why
    /// there are none. An internationalized domain is asked in its ASCII
    /// (punycode) form.
    pub fn candidates(&self, domain: &str) -> std::result::Result<Vec<Candidate>, DnsFailure> {
        let ascii = idna::domain_to_ascii(domain.trim_end_matches('.'))
            .map_err(|_| not_a_domain(domain))?;
        if ascii.is_empty() || ascii.starts_with('[') || ascii.parse::<IpAddr>().is_ok() {
            return Err(not_a_domain(domain));
        }
        let fqdn = format!("{ascii}.");
        let records = match self.mx(&fqdn, domain)? {
            Found::Records(r) => r,
            Found::NoDomain => return Err(no_such_domain(domain)),
            Found::NoRecords => Vec::new(),
        };
        let hosts = if records.is_empty() {
            // The implicit MX: the domain itself, preference 0.
            vec![ascii.clone()]
        } else {
            match order::order_hosts(&records, &mut fastrand::Rng::new()) {
                Hosts::Null => return Err(null_mx(domain)),
                Hosts::Ordered(h) => h,
            }
        };
        let mut addressed = Vec::new();
        let mut temporary = None;
        for host in hosts {
            match self.addresses(&format!("{host}.")) {
                Ok(Found::Records(ips)) => addressed.push((host, ips)),
                Ok(Found::NoRecords | Found::NoDomain) => {}
                Err(why) => temporary = Some(why),
            }
        }
        let found = order::candidates(&addressed, self.port);
        if !found.is_empty() {
            return Ok(found);
        }
        if let Some(why) = temporary {
            return Err(dns_unavailable(domain, &why));
        }
        Err(no_address(
            domain,
            if records.is_empty() {
                "no MX record and no address record"
            } else {
                "none of its MX hosts has an address"
            },
        ))
    }

    fn mx(
        &self,
        fqdn: &str,
        domain: &str,
    ) -> std::result::Result<Found<Vec<MxRecord>>, DnsFailure> {
        let answer = self.runtime.block_on(self.resolver.mx_lookup(fqdn));
        let lookup = match classify(answer) {
            Ok(Found::Records(l)) => l,
            Ok(Found::NoRecords) => return Ok(Found::NoRecords),
            Ok(Found::NoDomain) => return Ok(Found::NoDomain),
            Err(why) => return Err(dns_unavailable(domain, &why)),
        };
        let records: Vec<MxRecord> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference,
                    exchange: mx.exchange.to_ascii(),
                }),
                _ => None,
            })
            .collect();
        Ok(if records.is_empty() {
            Found::NoRecords
        } else {
            Found::Records(records)
        })
    }

    fn addresses(&self, fqdn: &str) -> std::result::Result<Found<Vec<IpAddr>>, String> {
        let answer = self.runtime.block_on(self.resolver.lookup_ip(fqdn));
        Ok(match classify(answer)? {
            Found::Records(l) => {
                let ips: Vec<IpAddr> = l.iter().collect();
                if ips.is_empty() {
                    Found::NoRecords
                } else {
                    Found::Records(ips)
                }
            }
            Found::NoRecords => Found::NoRecords,
            Found::NoDomain => Found::NoDomain,
        })
    }
}

/// A lookup's result as found / not there / try later (with why).
fn classify<T>(answer: std::result::Result<T, NetError>) -> std::result::Result<Found<T>, String> {
    match answer {
        Ok(found) => Ok(Found::Records(found)),
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => match none.response_code {
            ResponseCode::NXDomain => Ok(Found::NoDomain),
            ResponseCode::NoError => Ok(Found::NoRecords),
            other => Err(format!("the DNS server answered {other}")),
        },
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain))) => Ok(Found::NoDomain),
        Err(NetError::Timeout) => Err("the DNS server did not answer in time".into()),
        Err(e) => Err(e.to_string()),
    }
}
