//! TLS configuration: the rustls client config (trust roots, `ca_file`), server
//! names, and an ephemeral test PKI for the capture server and test fixtures.
//!
//! One backend only (rustls with the ring provider). Configs are built with an
//! explicit provider so no process-wide default has to be installed. Certificate
//! verification is always on (RFC 8314 section 5, RFC 3207 section 4.1): the only
//! way to trust a private relay is to name its CA in `ca_file`. (Direct
//! delivery to MX hosts may use `opportunistic` instead.)

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::{Error, Location, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trust anchors, loaded once per process: reading the system
/// store parses a few hundred kilobytes, and sessions reconnect often.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    // Errors are ignored on purpose: a machine without a system store still has
    // the webpki roots and the user's `ca_file`.
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Every certificate in the PEM file `ca_file`.
///
/// A missing or unreadable file is `Error::NoInput`; a file without a single
/// certificate is `Error::Invalid` naming the file.
pub fn load_ca_file(ca_file: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(ca_file).map_err(|e| Error::no_input(ca_file, &e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::invalid(
                Location::file(ca_file),
                format!("ca_file is not valid PEM: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            Location::file(ca_file),
            "ca_file contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The client TLS configuration: webpki roots, the system roots and every
/// certificate in `ca_file`, with verification always on.
///
/// A certificate is accepted when it chains to any of these anchors. The
/// system's anchors (a few hundred PEM certificates, read and parsed in a few
/// milliseconds) are only loaded when a certificate does not verify against
/// the webpki roots and `ca_file` alone: a relay with a public certificate
/// or one issued by `ca_file`'s CA never needs them.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| {
                Error::invalid(
                    Location::file(path),
                    format!("ca_file certificate cannot be used as a trust anchor: {e}"),
                )
            })?;
        }
    }
    verifying_config(Anchors::new(roots, native_roots)?)
}

/// A client configuration that verifies servers with `anchors`.
fn verifying_config(anchors: Anchors) -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Software(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(anchors))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Certificate verification against `first` plus the anchors `more` returns,
/// which are only fetched when `first` alone does not vouch for a server.
/// A chain that verifies against `first` verifies against the union too, so
/// the outcome is that of verifying against the union every time.
#[derive(Debug)]
struct Anchors {
    first: Arc<WebPkiServerVerifier>,
    roots: RootCertStore,
    more: fn() -> &'static [CertificateDer<'static>],
    all: OnceLock<std::result::Result<Arc<WebPkiServerVerifier>, String>>,
}

/// rustls's own verifier (webpki, no revocation lists) over `roots`.
fn webpki_verifier(roots: RootCertStore) -> std::result::Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("TLS setup: {e}"))
}

impl Anchors {
    fn new(roots: RootCertStore, more: fn() -> &'static [CertificateDer<'static>]) -> Result<Self> {
        let first = webpki_verifier(roots.clone()).map_err(Error::Software)?;
        Ok(Anchors {
            first,
            roots,
            more,
            all: OnceLock::new(),
        })
    }

    /// The verifier for every anchor, built on first use.
    fn all(&self) -> std::result::Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.all
            .get_or_init(|| {
                let mut roots = self.roots.clone();
                // Malformed system certificates are skipped rather than failing the run.
                let _ = roots.add_parsable_certificates((self.more)().iter().cloned());
                webpki_verifier(roots)
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl ServerCertVerifier for Anchors {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.first
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .or_else(|_| {
                self.all()?.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.first.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.first.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.first.supported_verify_schemes()
    }
}

/// A client configuration that trusts nothing, for plain-text sessions that
/// never start TLS: loading the system's trust anchors (tens of
/// milliseconds) is skipped, and a handshake with it could not succeed.
pub fn plain_text_config() -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Software(format!("TLS setup: {e}")))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to verify the server's certificate against: a DNS name or an IP
/// literal (with or without `[]`).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned())
        .map_err(|e| Error::Usage(format!("invalid TLS server name {host:?}: {e}")))
}

/// An ephemeral CA and a leaf certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate a client should trust.
    pub ca_pem: String,
    /// The server's leaf certificate (not a CA).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

/// A fresh CA plus a leaf for `localhost`, `127.0.0.1`, `::1` and `names`,
/// signed by that CA.
///
/// webpki refuses a CA certificate used as an end entity, so the leaf is a
/// separate non-CA certificate rather than a self-signed one.
pub fn generate_pki(names: &[&str]) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "mailshot test CA");
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in names {
        if !sans.iter().any(|s| s == name) {
            sans.push((*name).to_owned());
        }
    }
    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let mut leaf_params = CertificateParams::new(sans).expect("leaf params");
    let mut leaf_dn = DistinguishedName::new();
    leaf_dn.push(DnType::CommonName, "localhost");
    leaf_params.distinguished_name = leaf_dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("sign leaf");

    TestPki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// A server configuration presenting the leaf of `pki` (and its CA, as the chain).
pub fn server_config(pki: &TestPki) -> Arc<ServerConfig> {
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .expect("leaf certificate PEM");
    chain.extend(
        CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("CA certificate PEM"),
    );
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("leaf key PEM");
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("leaf certificate matches its key");
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Runs one TLS handshake over loopback and echoes a line, so the test
    /// exercises real certificate verification, not just config building.
    fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>, name: &str) -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 5];
            if tls.read_exact(&mut buf).is_ok() {
                let _ = tls.write_all(&buf);
                let _ = tls.flush();
            }
        });
        let sock = TcpStream::connect(addr).unwrap();
        let conn = rustls::ClientConnection::new(client, server_name(name)?).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let res = tls.write_all(b"hello").and_then(|_| {
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).map(|_| buf)
        });
        drop(tls);
        srv.join().unwrap();
        match res {
            Ok(buf) if &buf == b"hello" => Ok(()),
            Ok(_) => Err(Error::Software("echo mismatch".into())),
            Err(e) => Err(Error::Unavailable(e.to_string())),
        }
    }

    fn write_temp(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn trusted_ca_file_verifies_localhost_and_ip() {
        let pki = generate_pki(&["mx.test"]);
        let ca = write_temp(&pki.ca_pem);
        let client = client_config(Some(ca.path())).unwrap();
        for name in ["localhost", "127.0.0.1", "mx.test"] {
            handshake(client.clone(), server_config(&pki), name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn without_ca_file_the_test_cert_is_rejected() {
        let pki = generate_pki(&[]);
        let client = client_config(None).unwrap();
        assert!(handshake(client, server_config(&pki), "localhost").is_err());
    }

    #[test]
    fn wrong_name_is_rejected() {
        let pki = generate_pki(&[]);
        let ca = write_temp(&pki.ca_pem);
        let client = client_config(Some(ca.path())).unwrap();
        assert!(handshake(client, server_config(&pki), "example.org").is_err());
    }

    #[test]
    fn another_ca_does_not_vouch_for_the_server() {
        let pki = generate_pki(&[]);
        let other = generate_pki(&[]);
        let ca = write_temp(&other.ca_pem);
        let client = client_config(Some(ca.path())).unwrap();
        assert!(handshake(client, server_config(&pki), "localhost").is_err());
    }

    #[test]
    fn leaf_is_issued_by_the_ca_not_self_signed() {
        let pki = generate_pki(&[]);
        assert_ne!(pki.ca_pem, pki.cert_pem);
        // A self-signed leaf would verify when trusted directly; a CA-issued
        // one names the CA as issuer, so trusting only the leaf fails.
        let leaf_only = write_temp(&pki.cert_pem);
        let client = client_config(Some(leaf_only.path())).unwrap();
        assert!(handshake(client, server_config(&pki), "localhost").is_err());
    }

    /// The anchors `more` hands out in the tests below, and how often it did.
    static MORE: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    static MORE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static MORE_PKI: OnceLock<TestPki> = OnceLock::new();

    fn more() -> &'static [CertificateDer<'static>] {
        MORE_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        MORE.get_or_init(|| {
            let pki = MORE_PKI.get_or_init(|| generate_pki(&[]));
            CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .unwrap()
        })
    }

    fn webpki_only() -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots
    }

    #[test]
    fn anchors_loaded_late_still_vouch_for_a_server_and_the_rest_are_checked_first() {
        // A server whose CA is only among the late anchors (as a private CA
        // installed in the system store would be) is trusted...
        let late = MORE_PKI.get_or_init(|| generate_pki(&[])).clone();
        let config = verifying_config(Anchors::new(webpki_only(), more).unwrap()).unwrap();
        handshake(config.clone(), server_config(&late), "localhost").unwrap();
        assert_eq!(MORE_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
        // ...with the right name only, and a CA in neither set is not.
        assert!(handshake(config.clone(), server_config(&late), "example.org").is_err());
        let stranger = generate_pki(&[]);
        assert!(handshake(config, server_config(&stranger), "localhost").is_err());
        // A server the first set vouches for never loads the late ones.
        let own = generate_pki(&[]);
        let mut roots = webpki_only();
        for cert in CertificateDer::pem_slice_iter(own.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let anchors = Anchors::new(roots, more).unwrap();
        let before = MORE_CALLS.load(std::sync::atomic::Ordering::SeqCst);
        let config = verifying_config(anchors).unwrap();
        handshake(config, server_config(&own), "localhost").unwrap();
        assert_eq!(MORE_CALLS.load(std::sync::atomic::Ordering::SeqCst), before);
    }

    #[test]
    fn missing_ca_file_is_no_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pem");
        let err = client_config(Some(&path)).unwrap_err();
        assert!(matches!(err, Error::NoInput { .. }), "{err:?}");
    }

    #[test]
    fn ca_file_without_certificate_is_invalid_and_named() {
        let f = write_temp("just some text\n");
        let err = client_config(Some(f.path())).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("smtp.qq.com").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name!").is_err());
    }
}
