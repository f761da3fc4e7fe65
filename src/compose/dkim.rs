//! DKIM signing (RFC 6376) of composed messages: `rsa-sha256` and
//! `ed25519-sha256` (RFC 8463), relaxed/relaxed canonicalization, the
//! `DKIM-Signature` header prepended to the message bytes.
//!
//! The cryptography is `ring`'s (already linked for rustls). The DKIM crates
//! were weighed and not taken: mail-auth 0.15 cannot be built without a DNS
//! resolver backend (hickory + tokio, or reqwest) that a signer never uses,
//! mini-mail-auth has no Ed25519, viadkim is GPL. What is left here is the
//! canonicalization and the tag list, checked against an independent
//! verifier (dkimpy) in the integration tests.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};

use crate::compose::message::Outgoing;
use crate::error::{Error, Location, Result};
use crate::job::DkimSpec;

/// Header fields signed when present, in this order. Every occurrence is
/// signed; `From` is also signed once more than it occurs ("over-signing",
/// RFC 6376 §8.15) so that nobody can add a second From after signing.
const SIGNED: &[&str] = &[
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "in-reply-to",
    "references",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Width of the base64 chunks of `b=` and `bh=` when folded.
const B64_LINE: usize = 72;

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A loaded signing key with its `d=` domain and `s=` selector.
pub struct Signer {
    domain: String,
    selector: String,
    key: Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Load the job's `dkim:` key file (PEM: PKCS#8 RSA or Ed25519, or PKCS#1
    /// RSA). A key that cannot be used is an invalid job naming the file.
    pub fn load(spec: &DkimSpec) -> Result<Signer> {
        let pem = std::fs::read(&spec.key_file).map_err(|e| Error::no_input(&spec.key_file, &e))?;
        Signer::from_pem(&spec.domain, &spec.selector, &pem)
            .map_err(|m| Error::invalid(Location::file(&spec.key_file), m))
    }

    /// A signer from PEM bytes; the error says what is wrong with the key.
    pub fn from_pem(
        domain: &str,
        selector: &str,
        pem: &[u8],
    ) -> std::result::Result<Signer, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            format!("dkim.key_file: not a PEM private key ({e}); expected e.g. the output of `openssl genpkey -algorithm ed25519`")
        })?;
        let key =
            match &der {
                PrivateKeyDer::Pkcs1(k) => Key::Rsa(
                    RsaKeyPair::from_der(k.secret_pkcs1_der())
                        .map_err(|e| format!("dkim.key_file: unusable RSA key: {e}"))?,
                ),
                PrivateKeyDer::Pkcs8(k) => {
                    let bytes = k.secret_pkcs8_der();
                    // openssl writes Ed25519 PKCS#8 v1 (no public key), which
                    // only the "maybe unchecked" constructor accepts.
                    if let Ok(ed) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
                        Key::Ed25519(ed)
                    } else {
                        Key::Rsa(RsaKeyPair::from_pkcs8(bytes).map_err(|e| {
                            format!("dkim.key_file: neither an RSA nor an Ed25519 key: {e}")
                        })?)
                    }
                }
                _ => return Err(
                    "dkim.key_file: only RSA and Ed25519 keys can sign DKIM (RFC 6376, RFC 8463)"
                        .into(),
                ),
            };
        if let Key::Rsa(k) = &key {
            // RFC 8301: verifiers must reject RSA keys under 1024 bits.
            if k.public().modulus_len() < 128 {
                return Err("dkim.key_file: RSA keys shorter than 1024 bits are refused by verifiers (RFC 8301); use 2048".into());
            }
        }
        Ok(Signer {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key,
        })
    }

    /// The `a=` tag value.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The `DKIM-Signature` header field (folded, ending in CRLF) for the
    /// CRLF message `message`, signed at Unix time `timestamp`.
    pub fn signature_header(&self, message: &[u8], timestamp: i64) -> Vec<u8> {
        let (head, body) = split_message(message);
        let fields = header_fields(head);
        let body_hash = B64.encode(Sha256::digest(relaxed_body(body)));

        let mut names: Vec<&str> = Vec::new();
        let mut data = Vec::new();
        for &name in SIGNED {
            // Bottom-up, as a verifier pairs repeated names (RFC 6376 §5.4.2).
            let mut count = 0;
            for field in fields
                .iter()
                .rev()
                .filter(|f| f.0.eq_ignore_ascii_case(name))
            {
                relaxed_header(field.1, &mut data);
                count += 1;
            }
            let extra = usize::from(name == "from");
            names.extend(std::iter::repeat_n(name, count + extra));
        }

        let mut header = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n\tt={}; h={};\r\n\tbh={};\r\n\tb=",
            self.algorithm(),
            self.domain,
            self.selector,
            timestamp.max(0),
            names.join(":"),
            body_hash,
        );
        // The signature covers its own header with an empty b=, no CRLF.
        let mut own = Vec::new();
        relaxed_header(header.as_bytes(), &mut own);
        own.truncate(own.len() - 2);
        data.extend_from_slice(&own);

        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    &data,
                    &mut sig,
                )
                .expect("RSA signing with a valid key and buffer");
                sig
            }
            // RFC 8463 §3: Ed25519 signs the SHA-256 hash, not the data.
            Key::Ed25519(k) => k.sign(&Sha256::digest(&data)).as_ref().to_vec(),
        };
        let b = B64.encode(signature);
        for (i, chunk) in b.as_bytes().chunks(B64_LINE).enumerate() {
            if i > 0 {
                header.push_str("\r\n\t ");
            }
            header.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        }
        header.push_str("\r\n");
        header.into_bytes()
    }

    /// The message with its `DKIM-Signature` prepended (same envelope).
    pub fn sign(&self, message: &Outgoing, timestamp: i64) -> Outgoing {
        let header = self.signature_header(&message.data.contiguous(), timestamp);
        Outgoing {
            data: Arc::new(message.data.with_head(&header)),
            ..message.clone()
        }
    }

    /// The DNS TXT record to publish at `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_record(&self) -> String {
        let (k, p) = match &self.key {
            // The SubjectPublicKeyInfo DER, as RFC 6376 §3.6.1 asks.
            Key::Rsa(k) => ("rsa", rsa_spki(k.public().as_ref())),
            // RFC 8463 §4.2: the bare 32-byte key.
            Key::Ed25519(k) => ("ed25519", k.public_key().as_ref().to_vec()),
        };
        format!("v=DKIM1; k={k}; p={}", B64.encode(p))
    }

    /// The record's owner name, `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

/// Load the job's signer, if it has `dkim:`.
pub fn for_job(spec: Option<&DkimSpec>) -> Result<Option<Signer>> {
    spec.map(Signer::load).transpose()
}

/// Head (without the blank line) and body of a CRLF message.
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// (name, whole field including continuation lines and its CRLF).
fn header_fields(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut fields: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |p| i + p + 2);
        let continues = matches!(head.get(end), Some(b' ' | b'\t'));
        if !continues {
            let field = &head[start..end];
            let name = field
                .iter()
                .position(|&b| b == b':')
                .and_then(|c| std::str::from_utf8(&field[..c]).ok())
                .unwrap_or("")
                .trim_end();
            fields.push((name, field));
            start = end;
        }
        i = end;
    }
    fields
}

/// RFC 6376 §3.4.2: lower-case name, unfolded, runs of WSP as one SP, no
/// WSP at the ends of the value or around the colon; CRLF-terminated.
fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = &field[..colon];
    let value = field.get(colon + 1..).unwrap_or(&[]);
    out.extend(
        name.iter()
            .filter(|b| !matches!(b, b' ' | b'\t'))
            .map(u8::to_ascii_lowercase),
    );
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = started,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 6376 §3.4.4: runs of WSP as one SP, none at line ends, no trailing
/// empty lines; a non-empty body ends in CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut blank_lines = 0usize;
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let last = lines.peek().is_none();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if last && line.is_empty() {
            break;
        }
        let mut canon = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    canon.push(b' ');
                    space = false;
                }
                canon.push(b);
            }
        }
        if canon.is_empty() {
            blank_lines += 1;
            continue;
        }
        for _ in 0..blank_lines {
            out.extend_from_slice(b"\r\n");
        }
        blank_lines = 0;
        out.extend_from_slice(&canon);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (rsaEncryption OID).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALG.to_vec();
    der_tlv(0x03, &bit_string, &mut inner);
    let mut out = Vec::new();
    der_tlv(0x30, &inner, &mut out);
    out
}

fn der_tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_body_matches_rfc_6376_example() {
        // RFC 6376 §3.4.6, example 1 body, relaxed.
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(relaxed_body(body), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"a\r\n\r\nb"), b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn relaxed_header_matches_rfc_6376_example() {
        let mut out = Vec::new();
        relaxed_header(b"A: X\r\n", &mut out);
        relaxed_header(b"B : Y\t\r\n\tZ  \r\n", &mut out);
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn header_fields_keep_continuations() {
        let head = b"Subject: a\r\n b\r\nFrom: x@y\r\n";
        let f = header_fields(head);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], ("Subject", &b"Subject: a\r\n b\r\n"[..]));
        assert_eq!(f[1].0, "From");
    }

    #[test]
    fn rejects_non_keys() {
        let err = Signer::from_pem("d", "s", b"not a key").unwrap_err();
        assert!(err.contains("dkim.key_file"), "{err}");
    }

    #[test]
    fn ed25519_signature_verifies_with_ring() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(pkcs8.as_ref())
        );
        let signer = Signer::from_pem("example.com", "s1", pem.as_bytes()).unwrap();
        assert_eq!(signer.algorithm(), "ed25519-sha256");
        let msg = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let header = String::from_utf8(signer.signature_header(msg, 1)).unwrap();
        assert!(header.contains("h=from:from:subject;"), "{header}");
        // Recompute the signed data independently of signature_header.
        let b_start = header.find("\tb=").map(|i| i + 3).unwrap();
        let sig: String = header[b_start..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let sig = B64.decode(sig).unwrap();
        let mut data = b"from:a@example.com\r\nsubject:hi\r\n".to_vec();
        relaxed_header(&header.as_bytes()[..b_start], &mut data);
        data.truncate(data.len() - 2);
        let public = signer.dns_record();
        let p = B64.decode(public.rsplit_once("p=").unwrap().1).unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, p)
            .verify(&Sha256::digest(&data), &sig)
            .expect("signature verifies");
    }
}
