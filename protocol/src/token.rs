//! One-time enrollment tokens, as pasted by an admin onto a workstation or technician laptop.
//!
//! A token carries where the relay is, the SHA-256 fingerprint of the organisation CA, and a
//! 256-bit secret. The enrolling side pins the CA by that fingerprint before it trusts anything
//! the relay says (as kubeadm's discovery hash does); the relay keeps only a hash of the secret
//! and decides whether it is valid, unused and unexpired.

use crate::codec;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const PREFIX: &str = "tether1_";
/// No legitimate token is anywhere near this long.
pub const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// `host:port` the enrolling side connects to, or several separated by commas
    /// ([`relay_addrs`]).
    pub relay_addr: String,
    /// Name the relay's certificate is checked against.
    pub server_name: String,
    /// SHA-256 of the organisation CA certificate (DER).
    pub ca_fingerprint: [u8; 32],
    pub secret: [u8; 32],
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a Tether enrollment token (it should start with {PREFIX:?})")]
    BadPrefix,
    #[error("enrollment token is too long")]
    TooLong,
    #[error("enrollment token is damaged (was it copied whole?)")]
    Damaged,
}

impl EnrollToken {
    pub fn encode(&self) -> String {
        // Encoding a struct of strings and arrays cannot fail; fall back to an empty body anyway
        // rather than panic, which decodes as Damaged.
        let bytes = codec::to_bytes(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn decode(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        if s.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let body = s.strip_prefix(PREFIX).ok_or(TokenError::BadPrefix)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Damaged)?;
        let token: EnrollToken = codec::from_payload(&bytes).map_err(|_| TokenError::Damaged)?;
        if token.relay_addr.is_empty() || token.server_name.is_empty() {
            return Err(TokenError::Damaged);
        }
        Ok(token)
    }
}

/// The relay addresses in a token's or a client's `relay_addr`: one `host:port`, or several
/// separated by commas (relays sharing one store; a client fails over between them). Empty
/// entries are skipped.
pub fn relay_addrs(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|a| !a.is_empty())
}

/// Lower-case hex, for fingerprints in messages and files.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrollToken {
        EnrollToken {
            relay_addr: "127.0.0.1:4433".into(),
            server_name: "relay.example.org".into(),
            ca_fingerprint: [7; 32],
            secret: [9; 32],
        }
    }

    #[test]
    fn roundtrip() {
        let t = sample();
        let s = t.encode();
        assert!(s.starts_with(PREFIX));
        assert_eq!(EnrollToken::decode(&format!("  {s}\n")).unwrap(), t);
    }

    #[test]
    fn damaged_tokens_are_typed_errors() {
        let s = sample().encode();
        assert_eq!(EnrollToken::decode("hello"), Err(TokenError::BadPrefix));
        assert_eq!(
            EnrollToken::decode(&s[..s.len() - 5]),
            Err(TokenError::Damaged)
        );
        assert_eq!(
            EnrollToken::decode(&format!("{PREFIX}!!!")),
            Err(TokenError::Damaged)
        );
        assert_eq!(
            EnrollToken::decode(&"x".repeat(5000)),
            Err(TokenError::TooLong)
        );
    }
}
