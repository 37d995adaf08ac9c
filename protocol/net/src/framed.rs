//! Length-prefixed messages on QUIC streams. The header is read and checked against the limit
//! before the payload is read, so a peer cannot make us allocate more than `max` bytes.

use crate::NetError;
use quinn::{RecvStream, SendStream};
use serde::{Serialize, de::DeserializeOwned};
use tether_protocol::{codec, frame};

pub async fn write_msg<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
    max: usize,
) -> Result<(), NetError> {
    let bytes = codec::to_frame(msg, max)?;
    send.write_all(&bytes).await?;
    Ok(())
}

/// Reads one frame's payload; `Ok(None)` if the stream finished cleanly between frames.
pub async fn read_payload(recv: &mut RecvStream, max: usize) -> Result<Option<Vec<u8>>, NetError> {
    let mut header = [0u8; frame::HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame::payload_len(header, max).map_err(|e| NetError::Protocol(e.to_string()))?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// Reads and decodes one message; a finished stream is an error here.
pub async fn read_msg<T: DeserializeOwned>(
    recv: &mut RecvStream,
    max: usize,
) -> Result<T, NetError> {
    match read_payload(recv, max).await? {
        Some(p) => Ok(codec::from_payload(&p)?),
        None => Err(NetError::Protocol(
            "stream ended before the expected message".into(),
        )),
    }
}

/// Frames read by a background task, for `select!` loops: reading a frame is not cancel-safe,
/// receiving from the channel is. The channel ends after a finished stream or an error (which is
/// delivered first). Drop the reader (aborting its task) when done.
pub struct FrameReader {
    pub rx: tokio::sync::mpsc::Receiver<Result<Option<Vec<u8>>, NetError>>,
    task: tokio::task::JoinHandle<()>,
}

impl FrameReader {
    pub fn spawn(mut recv: RecvStream, max: usize) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(async move {
            loop {
                let r = read_payload(&mut recv, max).await;
                let end = !matches!(r, Ok(Some(_)));
                if tx.send(r).await.is_err() || end {
                    break;
                }
            }
        });
        Self { rx, task }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
