//! The one place that knows how messages become bytes (bincode 2, serde mode).
//!
//! Everything else goes through [`to_frame`], [`from_payload`] and friends, so the encoding could
//! be swapped (for postcard, say) by changing this module alone.

use crate::frame::{self, FrameError};
use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// Upper bound on what the decoder may claim for containers, whatever a length prefix says.
const DECODE_LIMIT: usize = 2 * crate::limits::BULK;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("message could not be encoded: {0}")]
    Encode(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Serializes `msg` without framing.
pub fn to_bytes<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Serializes `msg` and frames it, refusing payloads over `max`.
pub fn to_frame<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, CodecError> {
    Ok(frame::encode(&to_bytes(msg)?, max)?)
}

/// Decodes one whole payload. Trailing bytes are an error: a frame holds exactly one message.
pub fn from_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes(payload.len() - used));
    }
    Ok(msg)
}

/// Reads only the leading protocol version of a `Hello` payload.
///
/// `Hello` keeps its version as the first field forever, so a relay can refuse a future client
/// with a clear "unsupported version" even when it cannot decode the rest of its hello.
pub fn peek_version(payload: &[u8]) -> Result<u16, CodecError> {
    bincode::serde::decode_from_slice::<u16, _>(payload, config())
        .map(|(v, _)| v)
        .map_err(|e| CodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Hello, Intent};

    #[test]
    fn roundtrip_and_trailing_bytes() {
        let hello = Hello::new(Intent::Technician, "test");
        let mut bytes = to_bytes(&hello).unwrap();
        assert_eq!(from_payload::<Hello>(&bytes).unwrap(), hello);
        assert_eq!(peek_version(&bytes).unwrap(), crate::PROTOCOL_VERSION);
        bytes.push(0);
        assert_eq!(
            from_payload::<Hello>(&bytes),
            Err(CodecError::TrailingBytes(1))
        );
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // A Vec<String> claiming u64::MAX elements.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            from_payload::<Vec<String>>(&bytes),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn frame_limit_applies_on_encode() {
        let big = vec![7u8; 100];
        assert!(matches!(
            to_frame(&big, 50),
            Err(CodecError::Frame(FrameError::TooLarge { .. }))
        ));
    }
}
