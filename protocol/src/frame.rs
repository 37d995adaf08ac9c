//! Length-prefixed framing: a 4-byte big-endian payload length, then the payload.
//!
//! The length is checked against the caller's limit before a single payload byte is buffered,
//! so a peer announcing a 4 GiB frame costs us four bytes of memory, not four gigabytes.

use thiserror::Error;

/// Size of the frame header.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
}

/// Validates a frame header and returns the payload length it announces.
pub fn payload_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Prepends the header to `payload`. Fails if the payload is over `max` (or empty).
pub fn encode(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let len = payload.len();
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Incremental frame decoder for byte streams that arrive in arbitrary pieces.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    /// Set once a bad header was seen: the stream cannot be resynchronised.
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            failed: None,
        }
    }

    /// Appends received bytes. Bytes after a framing error are ignored.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Returns the next complete payload, `Ok(None)` if more bytes are needed.
    ///
    /// The buffer never holds more than one header plus one maximal payload plus whatever the
    /// caller pushed at once: a header over the limit fails before its payload is awaited.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = match payload_len(*header, self.max) {
            Ok(len) => len,
            Err(e) => {
                self.buf = Vec::new();
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(payload))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_in_pieces() {
        let a = encode(b"hello", 16).unwrap();
        let b = encode(b"world!", 16).unwrap();
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut dec = FrameDecoder::new(16);
        let mut out = Vec::new();
        for byte in all {
            dec.push(&[byte]);
            while let Some(f) = dec.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![b"hello".to_vec(), b"world!".to_vec()]);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_header_fails_before_payload_arrives() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&u32::MAX.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
        // The decoder stays failed and stops buffering.
        dec.push(&[0; 4096]);
        assert_eq!(dec.buffered(), 0);
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn empty_frame_is_an_error() {
        assert_eq!(payload_len([0; 4], 10), Err(FrameError::Empty));
        assert_eq!(encode(b"", 10), Err(FrameError::Empty));
    }

    #[test]
    fn encode_refuses_over_limit() {
        assert_eq!(
            encode(&[1; 11], 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(encode(&[1; 10], 10).unwrap().len(), 14);
    }
}
