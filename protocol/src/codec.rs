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

/// A message enum that may grow: new variants are only ever appended, and a receiver that meets
/// one it does not know (from a newer peer) skips it instead of failing the session. `KNOWN` is
/// how many variants this build knows; a test pins it to the enum.
pub trait Extensible {
    const KNOWN: u32;
}

/// A decoded [`Extensible`] message, or the index of a variant from a newer peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    Known(T),
    Newer(u32),
}

/// Decodes one payload of an [`Extensible`] enum; a variant beyond [`Extensible::KNOWN`] is
/// [`Decoded::Newer`], anything else malformed is an error as with [`from_payload`].
pub fn from_payload_extensible<T: DeserializeOwned + Extensible>(
    payload: &[u8],
) -> Result<Decoded<T>, CodecError> {
    // Serde enums start with their variant index (a varint u32 in this configuration).
    let (index, _) = bincode::serde::decode_from_slice::<u32, _>(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if index >= T::KNOWN {
        return Ok(Decoded::Newer(index));
    }
    from_payload(payload).map(Decoded::Known)
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

    /// `KNOWN` is the enums' real variant count (the last variant encodes as `KNOWN - 1`), a
    /// newer peer's variant is skipped as `Newer`, and known ones still decode.
    #[test]
    fn newer_variants_are_recognised_not_fatal() {
        use crate::session::{ToAgent, ToViewer};
        fn index(bytes: &[u8]) -> u32 {
            bincode::serde::decode_from_slice::<u32, _>(bytes, config())
                .unwrap()
                .0
        }
        let agent_last = to_bytes(&ToAgent::StreamOptions(vec![])).unwrap();
        assert_eq!(index(&agent_last), ToAgent::KNOWN - 1);
        let viewer_last = to_bytes(&ToViewer::Delta(crate::session::FrameDelta {
            seq: 1,
            display: 0,
            size: None,
            rects: vec![],
            encode_10us: 0,
        }))
        .unwrap();
        assert_eq!(index(&viewer_last), ToViewer::KNOWN - 1);
        assert_eq!(
            from_payload_extensible::<ToAgent>(&agent_last).unwrap(),
            Decoded::Known(ToAgent::StreamOptions(vec![]))
        );
        // Agents from before `StreamOptions` knew 17 variants: its index, 17, is beyond them,
        // so they skip it as a newer viewer's message.
        let options = to_bytes(&ToAgent::StreamOptions(vec!["palette".into()])).unwrap();
        assert_eq!(index(&options), 17);
        // A variant appended by a newer peer, with whatever fields it has.
        let mut newer = to_bytes(&ToViewer::KNOWN).unwrap();
        newer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            from_payload_extensible::<ToViewer>(&newer).unwrap(),
            Decoded::Newer(ToViewer::KNOWN)
        );
        // Garbage is still an error.
        assert!(from_payload_extensible::<ToViewer>(&[]).is_err());
        assert!(from_payload_extensible::<ToViewer>(&[0, 0xff, 0xff]).is_err());
    }
}
