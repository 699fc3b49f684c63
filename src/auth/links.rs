//! Tracking links: the read-only credential in the links of notification e-mails and SMS,
//! like Shopify's order status page. It is signed: `trk_` then base64url of `version ‖
//! order id ‖ customer id ‖ expiry (unix seconds, i64 big-endian) ‖ issued (unix seconds,
//! u32 big-endian) ‖ MAC`, where the MAC is HMAC-SHA256 (first 16 bytes) keyed with a key
//! derived from the token secret. Version 1 links (before links could be revoked) have no
//! issue time and read as issued at 0. An order's links issued up to a moment can be
//! revoked (`DELETE /v1/orders/{id}/tracking-links`): that moment is stored per order and
//! checked on every use.
//!
//! Its holder may read and follow that one order (`GET /v1/orders/{id}`, `…/events`, and
//! the real-time streams narrowed to it) and nothing else: the authentication middleware
//! lets it through on those routes only. The key is derived apart from the access-token
//! key, so neither kind of token can pass for the other.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

pub const PREFIX: &str = "trk_";
const VERSION: u8 = 2;
/// Links issued before they could be revoked: no issue time.
const VERSION_1: u8 = 1;
const BODY_1: usize = 1 + 16 + 16 + 8;
const BODY: usize = BODY_1 + 4;
const MAC_LEN: usize = 16;
/// Domain separation from the access-token key.
const KEY_LABEL: &[u8] = b"ordo tracking link v1";

/// What a valid link grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkClaims {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds (0 for a version 1 link).
    pub issued_at: i64,
}

/// Why a link was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    Malformed,
    Expired,
}

/// Signs and checks tracking links; cheap to clone.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl LinkSigner {
    /// Derives the link key from the access-token secret (every node shares both).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
        mac.update(KEY_LABEL);
        LinkSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_hmac())
    }

    /// A link for one order, valid for `ttl` from `now` (unix seconds).
    pub fn issue(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        now: i64,
        ttl: std::time::Duration,
    ) -> String {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.sign(&LinkClaims {
            order_id,
            customer_id,
            expires_at: now.saturating_add(ttl),
            issued_at: now,
        })
    }

    pub fn sign(&self, c: &LinkClaims) -> String {
        let mut body = Vec::with_capacity(BODY + MAC_LEN);
        body.push(VERSION);
        body.extend_from_slice(c.order_id.as_bytes());
        body.extend_from_slice(c.customer_id.as_bytes());
        body.extend_from_slice(&c.expires_at.to_be_bytes());
        body.extend_from_slice(&u32::try_from(c.issued_at).unwrap_or(u32::MAX).to_be_bytes());
        let mut mac = self.mac();
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        body.extend_from_slice(&tag[..MAC_LEN]);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
        )
    }

    /// Checks the signature (in constant time), then the expiry against `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<LinkClaims, LinkError> {
        let raw = token.strip_prefix(PREFIX).ok_or(LinkError::Malformed)?;
        if raw.len() > 128 {
            return Err(LinkError::Malformed);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| LinkError::Malformed)?;
        let body_len = match bytes.first() {
            Some(&VERSION) => BODY,
            Some(&VERSION_1) => BODY_1,
            _ => return Err(LinkError::Malformed),
        };
        if bytes.len() != body_len + MAC_LEN {
            return Err(LinkError::Malformed);
        }
        let (body, tag) = bytes.split_at(body_len);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| LinkError::Malformed)?;
        let id = |r: std::ops::Range<usize>| {
            <[u8; 16]>::try_from(&body[r])
                .map(Uuid::from_bytes)
                .map_err(|_| LinkError::Malformed)
        };
        let exp = <[u8; 8]>::try_from(&body[33..41]).map_err(|_| LinkError::Malformed)?;
        let issued_at = match body.get(41..45) {
            Some(b) => <[u8; 4]>::try_from(b)
                .map(|b| i64::from(u32::from_be_bytes(b)))
                .map_err(|_| LinkError::Malformed)?,
            None => 0,
        };
        let claims = LinkClaims {
            order_id: id(1..17)?,
            customer_id: id(17..33)?,
            expires_at: i64::from_be_bytes(exp),
            issued_at,
        };
        if claims.expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

/// HMAC takes keys of any length; this cannot happen.
fn unreachable_hmac() -> HmacSha256 {
    unreachable!("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            order_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            expires_at: 2_000,
            issued_at: 1_000,
        }
    }

    #[test]
    fn a_link_round_trips_until_it_expires() {
        let s = LinkSigner::new(b"secret secret secret secret secret");
        let c = claims();
        let t = s.sign(&c);
        assert!(t.starts_with(PREFIX));
        assert!(t.len() < 90, "short enough for an SMS: {t}");
        assert_eq!(s.verify(&t, 1_999), Ok(c));
        assert_eq!(s.verify(&t, 2_000), Err(LinkError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_link_is_refused() {
        let s = LinkSigner::new(b"secret secret secret secret secret");
        let other = LinkSigner::new(b"another secret another secret");
        let c = claims();
        let t = s.sign(&c);
        assert_eq!(other.verify(&t, 0), Err(LinkError::Malformed));
        // Flip one character of the body (the order id).
        let mut chars: Vec<char> = t.chars().collect();
        chars[8] = if chars[8] == 'A' { 'B' } else { 'A' };
        let forged: String = chars.into_iter().collect();
        assert_eq!(s.verify(&forged, 0), Err(LinkError::Malformed));
        // A later expiry signed by nobody.
        let longer = LinkClaims {
            expires_at: 9_999_999_999,
            ..c
        };
        let mut t2 = other.sign(&longer);
        t2.truncate(t2.len() - 2);
        assert_eq!(s.verify(&t2, 0), Err(LinkError::Malformed));
        // A version 1 link (no issue time) is still read, as issued at 0.
        let mut v1 = vec![VERSION_1];
        v1.extend_from_slice(c.order_id.as_bytes());
        v1.extend_from_slice(c.customer_id.as_bytes());
        v1.extend_from_slice(&c.expires_at.to_be_bytes());
        let mut mac = s.mac();
        mac.update(&v1);
        v1.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        let v1 = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v1)
        );
        assert_eq!(s.verify(&v1, 0), Ok(LinkClaims { issued_at: 0, ..c }));
        for junk in ["", "trk_", "trk_!!!!", "ordo_x", &"trk_A".repeat(100)] {
            assert_eq!(s.verify(junk, 0), Err(LinkError::Malformed), "{junk}");
        }
    }
}
