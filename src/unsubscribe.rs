//! Unsubscribe links (RFC 8058 one-click, RFC 2369 `List-Unsubscribe`).
//!
//! A link is `BASE/u/TOKEN`. The token names the order (marketplace and
//! order id, which the listener looks up) and carries an HMAC-SHA256 tag
//! over the buyer's normalised address, the marketplace and the order id,
//! made with the seller's secret. So a token cannot be guessed or altered
//! (another order's, or the same order's with another address, fails), and
//! it holds no readable address: a forwarded link or a server log does not
//! give the buyer's address away. If an order's address changes after a
//! message went out, that message's link stops working; the buyer can still
//! use the link in any later message.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use crate::config::UnsubscribeConfig;
use crate::message::ListUnsubscribe;
use crate::order::{Line, Order, OrderKey};
use crate::suppress::Address;

/// Tokens start with this byte, so that the format can change later
/// without old links being misread.
const VERSION: u8 = 1;
/// Bytes of the tag kept in the token: 128 bits, beyond guessing, and a
/// shorter link than the full 256.
const TAG_BYTES: usize = 16;
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;
/// Tokens longer than this are refused unread (a marketplace and an order
/// id are short; this bounds the work a hostile request can ask for).
const MAX_TOKEN_CHARS: usize = 1024;

/// Why a token was refused. Deliberately coarse towards the requester: a
/// bad tag and an unknown order must look alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link is not valid")]
    Invalid,
    #[error("the unsubscribe secret must be at least {MIN_SECRET_BYTES} bytes (it has {0})")]
    WeakSecret(usize),
}

/// What a well-formed token names; not yet checked against the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub order: OrderKey,
    tag: [u8; TAG_BYTES],
}

/// Makes and checks tokens with one secret.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: <secret> }")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(TokenError::WeakSecret(secret.len()));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    fn tag(&self, address: &Address, order: &OrderKey) -> [u8; TAG_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Lengths first, so that no two (address, marketplace, id) triples
        // feed the same bytes.
        for part in [
            address.as_str(),
            order.marketplace.as_str(),
            order.order_id.as_str(),
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let full = ctx.sign();
        let mut tag = [0; TAG_BYTES];
        tag.copy_from_slice(&full.as_ref()[..TAG_BYTES]);
        tag
    }

    /// The token for a message to `address` about `order`.
    pub fn token(&self, address: &Address, order: &OrderKey) -> String {
        let marketplace = order.marketplace.as_str().as_bytes();
        let order_id = order.order_id.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(3 + marketplace.len() + order_id.len() + TAG_BYTES);
        bytes.push(VERSION);
        // Marketplace names are short; a longer one is cut to the length
        // byte and the token then fails to verify rather than misreading.
        bytes.push(marketplace.len().min(255) as u8);
        bytes.extend_from_slice(&marketplace[..marketplace.len().min(255)]);
        bytes.extend_from_slice(order_id);
        bytes.extend_from_slice(&self.tag(address, order));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `claim` was made by this secret for `address`. Compared in
    /// constant time.
    pub fn verify(&self, claim: &Claim, address: &Address) -> Result<(), TokenError> {
        let expected = self.tag(address, &claim.order);
        let difference = expected
            .iter()
            .zip(claim.tag.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(TokenError::Invalid)
        }
    }
}

/// Reads a token's structure: the order it names and its tag. Anyone can
/// do this; only [`Signer::verify`] says the token is genuine.
pub fn read(token: &str) -> Result<Claim, TokenError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(TokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| TokenError::Malformed)?;
    let (&version, rest) = bytes.split_first().ok_or(TokenError::Malformed)?;
    let (&len, rest) = rest.split_first().ok_or(TokenError::Malformed)?;
    if version != VERSION || rest.len() < usize::from(len) + 1 + TAG_BYTES {
        return Err(TokenError::Malformed);
    }
    let (marketplace, rest) = rest.split_at(usize::from(len));
    let (order_id, tag) = rest.split_at(rest.len() - TAG_BYTES);
    let order = OrderKey {
        marketplace: Line::parse("marketplace", text(marketplace)?)
            .map_err(|_| TokenError::Malformed)?,
        order_id: Line::parse("order_id", text(order_id)?).map_err(|_| TokenError::Malformed)?,
    };
    let mut claim_tag = [0; TAG_BYTES];
    claim_tag.copy_from_slice(tag);
    Ok(Claim {
        order,
        tag: claim_tag,
    })
}

fn text(bytes: &[u8]) -> Result<&str, TokenError> {
    std::str::from_utf8(bytes).map_err(|_| TokenError::Malformed)
}

/// The unsubscribe links for a message about `order`, or `None` when
/// `[unsubscribe]` is not configured.
pub fn links_for(config: Option<&UnsubscribeConfig>, order: &Order) -> Option<ListUnsubscribe> {
    let config = config?;
    // Every stored buyer address reads as a list address; one that did not
    // would get its messages without a link rather than none at all.
    let address = Address::parse(order.buyer_email.as_str()).ok()?;
    Some(ListUnsubscribe {
        url: link(&config.base_url, &config.signer.token(&address, &order.key)),
        mailto: config.mailto.as_ref().map(|m| m.to_string()),
    })
}

/// Adds `unsubscribe_url` to a template context: the link, or an empty
/// string when unsubscribe is not configured (so `{% if unsubscribe_url %}`
/// works and a template that uses it renders either way).
pub fn add_to_context(context: &mut tera::Context, links: Option<&ListUnsubscribe>) {
    context.insert("unsubscribe_url", links.map_or("", |l| l.url.as_str()));
}

/// `check`'s line: whether the links lead somewhere. A base URL with the
/// listener off is an error: every message would carry a dead link.
pub fn check(config: &crate::config::Config) -> Result<String, String> {
    let Some(unsubscribe) = &config.unsubscribe else {
        return Ok("off (no [unsubscribe]): messages carry no List-Unsubscribe header".into());
    };
    if config.http.is_none() {
        return Err(format!(
            "base_url {} is set but the listener is off ([http] listen): every link would \
             lead nowhere",
            unsubscribe.base_url
        ));
    }
    let mut line = format!("links {}/u/TOKEN, one-click by POST", unsubscribe.base_url);
    if let Some(mailto) = &unsubscribe.mailto {
        line.push_str(&format!(", mailto:{mailto}"));
    }
    if !unsubscribe.base_url.starts_with("https://") {
        line.push_str(" (not https: Gmail and Yahoo honour one-click links over https only)");
    }
    Ok(line)
}

/// The link for a token: `BASE/u/TOKEN` (a trailing slash on the base is
/// not doubled).
pub fn link(base_url: &str, token: &str) -> String {
    format!("{}/u/{token}", base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(marketplace: &str, id: &str) -> OrderKey {
        OrderKey {
            marketplace: Line::parse("marketplace", marketplace).unwrap(),
            order_id: Line::parse("order_id", id).unwrap(),
        }
    }

    fn ann() -> Address {
        Address::parse("Ann@Example.com").unwrap()
    }

    fn signer() -> Signer {
        Signer::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_token_reads_back_and_verifies() {
        let order = key("amazon.de", "302-1234567-7654321");
        let token = signer().token(&ann(), &order);
        assert!(token.len() < 100, "{token}");
        let claim = read(&token).unwrap();
        assert_eq!(claim.order, order);
        assert_eq!(signer().verify(&claim, &ann()), Ok(()));
    }

    #[test]
    fn the_token_holds_no_readable_address() {
        let token = signer().token(&ann(), &key("shop", "1001"));
        let decoded = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let text = String::from_utf8_lossy(&decoded).to_lowercase();
        assert!(!text.contains("ann") && !text.contains("example"), "{text}");
        assert!(!token.to_lowercase().contains("ann"));
    }

    #[test]
    fn altered_tokens_and_other_secrets_fail() {
        let order = key("shop", "1001");
        let token = signer().token(&ann(), &order);
        let other = Address::parse("bob@example.com").unwrap();
        let claim = read(&token).unwrap();
        assert_eq!(signer().verify(&claim, &other), Err(TokenError::Invalid));
        let stranger = Signer::new(&[8u8; 32]).unwrap();
        assert_eq!(stranger.verify(&claim, &ann()), Err(TokenError::Invalid));
        // Every single-character change either breaks the structure or
        // fails the check: none names another order with a valid tag.
        let chars: Vec<char> = token.chars().collect();
        for i in 0..chars.len() {
            for replacement in ['A', 'z', '0', '_', '-'] {
                if chars[i] == replacement {
                    continue;
                }
                let mut altered = chars.clone();
                altered[i] = replacement;
                let altered: String = altered.into_iter().collect();
                if let Ok(claim) = read(&altered) {
                    assert_eq!(
                        signer().verify(&claim, &ann()),
                        Err(TokenError::Invalid),
                        "{altered}"
                    );
                }
            }
        }
        // Another order's id with this order's tag.
        let forged = signer().token(&ann(), &key("shop", "1002"));
        let mut claim = read(&forged).unwrap();
        claim.tag = read(&token).unwrap().tag;
        assert_eq!(signer().verify(&claim, &ann()), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bad in ["", "!!!", "AQ", "AQAA", &"A".repeat(5000), "AgVzaG9w"] {
            assert_eq!(read(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        assert_eq!(
            Signer::new(b"short").unwrap_err(),
            TokenError::WeakSecret(5)
        );
    }

    #[test]
    fn links_join_cleanly() {
        assert_eq!(
            link("https://shop.example/", "T"),
            "https://shop.example/u/T"
        );
        assert_eq!(
            link("https://shop.example", "T"),
            "https://shop.example/u/T"
        );
    }
}
