//! DKIM signatures (RFC 6376) for sellers whose relay does not sign:
//! RSA-SHA256, or Ed25519-SHA256 (RFC 8463), relaxed/relaxed
//! canonicalization, made with ring (already in the tree through rustls).
//!
//! lettre's own `dkim` feature would bring the `rsa` crate, whose private-key
//! operations are not constant-time (RUSTSEC-2023-0071, no fixed release),
//! and a second Ed25519 implementation; ring signs with neither problem.
//! The signature covers the headers a receiver shows or acts on: From, To,
//! Subject, Date, Message-ID, Reply-To, both List-Unsubscribe headers, and
//! the MIME headers. One that a message lacks is still named, so that it
//! cannot be added later without breaking the signature.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair};

/// The headers signed, in this order (lower case, as written in `h=`).
const SIGNED: [&str; 10] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
];

/// Why a key could not be used, or a message not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimError {
    #[error("not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")]
    NotPem,
    #[error("the key is neither an RSA key of 2048 bits or more nor an Ed25519 key: {0}")]
    Key(String),
    #[error("the message has no header block to sign")]
    NoHeaders,
    #[error("signing failed")]
    Sign,
}

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Signs messages for one domain and selector.
pub struct DkimSigner {
    pub domain: String,
    pub selector: String,
    key: Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DkimSigner {{ d={}, s={}, a={} }}",
            self.domain,
            self.selector,
            self.algorithm()
        )
    }
}

impl DkimSigner {
    /// A signer from a PEM private key: PKCS#8 (`openssl genpkey -algorithm
    /// ed25519` or `-algorithm rsa`) or PKCS#1 (`openssl genrsa`).
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> Result<Self, DkimError> {
        let (label, der) = pem_block(pem).ok_or(DkimError::NotPem)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => {
                Key::Rsa(RsaKeyPair::from_der(&der).map_err(|e| DkimError::Key(e.to_string()))?)
            }
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&der) {
                Ok(rsa) => Key::Rsa(rsa),
                Err(rsa_error) => Key::Ed25519(
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                        .map_err(|e| DkimError::Key(format!("{rsa_error}; {e}")))?,
                ),
            },
            _ => return Err(DkimError::NotPem),
        };
        Ok(Self {
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_string(),
            key,
            rng: SystemRandom::new(),
        })
    }

    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The DNS TXT record to publish: its name and its value.
    pub fn dns_record(&self) -> (String, String) {
        let name = format!("{}._domainkey.{}", self.selector, self.domain);
        let value = match &self.key {
            Key::Rsa(rsa) => format!(
                "v=DKIM1; k=rsa; p={}",
                STANDARD.encode(rsa_spki(rsa.public().as_ref()))
            ),
            Key::Ed25519(ed) => format!(
                "v=DKIM1; k=ed25519; p={}",
                STANDARD.encode(ed.public_key().as_ref())
            ),
        };
        (name, value)
    }

    /// `raw` with a DKIM-Signature header in front.
    pub fn sign(&self, raw: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, DkimError> {
        let split = find(raw, b"\r\n\r\n").ok_or(DkimError::NoHeaders)?;
        let (head, body) = (&raw[..split + 2], &raw[split + 4..]);
        let body_hash = ring::digest::digest(&ring::digest::SHA256, &canonical_body(body));
        let fields = header_fields(head);
        let mut signed = Vec::new();
        for name in SIGNED {
            // The last instance of a header is the one a signer takes
            // first (RFC 6376 5.4.2); followupd writes each once.
            if let Some(field) = fields.iter().rev().find(|f| f.0.eq_ignore_ascii_case(name)) {
                signed.extend_from_slice(canonical_header(&field.1).as_bytes());
            }
        }
        let value = format!(
            "v=1; a={}; c=relaxed/relaxed; d={}; s={}; t={}; h={}; bh={}; b=",
            self.algorithm(),
            self.domain,
            self.selector,
            now.timestamp(),
            SIGNED.join(":"),
            STANDARD.encode(body_hash.as_ref())
        );
        let unsigned = format!("DKIM-Signature: {value}");
        let canonical = canonical_header(&unsigned);
        // The signature's own header goes in without its line break.
        signed.extend_from_slice(canonical.trim_end_matches("\r\n").as_bytes());
        let signature = match &self.key {
            Key::Rsa(rsa) => {
                let mut out = vec![0; rsa.public().modulus_len()];
                rsa.sign(&signature::RSA_PKCS1_SHA256, &self.rng, &signed, &mut out)
                    .map_err(|_| DkimError::Sign)?;
                out
            }
            // RFC 8463: Ed25519 signs the SHA-256 hash of the data.
            Key::Ed25519(ed) => ed
                .sign(ring::digest::digest(&ring::digest::SHA256, &signed).as_ref())
                .as_ref()
                .to_vec(),
        };
        let mut out = Vec::with_capacity(raw.len() + value.len() + 512);
        out.extend_from_slice(unsigned.as_bytes());
        out.extend_from_slice(STANDARD.encode(signature).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(raw);
        Ok(out)
    }
}

/// `check`'s line: whether messages are signed, the record to publish, and
/// whether the From domains align with the signing domain (DMARC passes on
/// DKIM only when they do).
pub fn check(config: &crate::config::Config) -> Result<String, String> {
    let Some(signer) = &config.dkim else {
        return Ok("off (no [transport.dkim]): followupd does not sign; the relay may".into());
    };
    let (name, value) = signer.dns_record();
    let mut line = format!(
        "signing with {} as d={} s={}; publish TXT {name} \"{value}\"",
        signer.algorithm(),
        signer.domain,
        signer.selector
    );
    let unaligned: Vec<String> = std::iter::once(&config.sender)
        .chain(config.marketplaces.values())
        .map(|s| s.from.email.domain().to_ascii_lowercase())
        .filter(|d| !(d == &signer.domain || d.ends_with(&format!(".{}", signer.domain))))
        .collect();
    if !unaligned.is_empty() {
        line.push_str(&format!(
            " (From domain {} is not d={}: DMARC will not pass on this signature)",
            unaligned.join(", "),
            signer.domain
        ));
    }
    Ok(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The header block as (name, the whole field with its line breaks).
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, _)) = line.split_once(':') {
            fields.push((name.trim().to_string(), line.to_string()));
        }
    }
    fields
}

/// Relaxed header canonicalization (RFC 6376 3.4.2): the name in lower
/// case, the value unfolded, runs of white space made one space, no space
/// around the colon or at the end.
fn canonical_header(field: &str) -> String {
    let (name, value) = field.split_once(':').unwrap_or((field, ""));
    let unfolded = value.replace("\r\n", "");
    let mut out = String::with_capacity(field.len());
    out.push_str(&name.trim_end().to_ascii_lowercase());
    out.push(':');
    let mut words = unfolded
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .peekable();
    while let Some(word) = words.next() {
        out.push_str(word);
        if words.peek().is_some() {
            out.push(' ');
        }
    }
    out.push_str("\r\n");
    out
}

/// Relaxed body canonicalization (RFC 6376 3.4.4): white space at line
/// ends removed, runs made one space, empty lines at the end removed.
fn canonical_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut white = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                white = true;
            } else {
                if white {
                    out.push(b' ');
                    white = false;
                }
                out.push(b);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    while out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    if out == b"\r\n" {
        out.clear();
    }
    out
}

/// The base64 body of the first PEM block, with its label.
fn pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find("-----END ")?;
    let b64: String = body[..end].split_whitespace().collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

/// An RSA public key (PKCS#1 `RSAPublicKey`, as ring gives it) wrapped in
/// the SubjectPublicKeyInfo that DKIM records carry (as `openssl rsa
/// -pubout` writes it).
fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 rsaEncryption, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(rsa_public_key);
    let mut inner = ALGORITHM.to_vec();
    inner.extend(der(0x03, &bit_string));
    der(0x30, &inner)
}

/// One DER element: tag, length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_as_the_rfc_shows_it() {
        // RFC 6376 3.4.5's example.
        assert_eq!(canonical_header("A: X\r\n"), "a:X\r\n");
        assert_eq!(canonical_header("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
        assert_eq!(
            canonical_body(b" C \r\nD \t E\r\n\r\n\r\n"),
            b" C\r\nD E\r\n"
        );
        assert_eq!(canonical_body(b""), b"");
        assert_eq!(canonical_body(b"\r\n\r\n"), b"");
    }

    #[test]
    fn garbage_keys_are_refused() {
        for pem in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                DkimSigner::from_pem("shop.example", "s1", pem).is_err(),
                "{pem}"
            );
        }
    }
}
