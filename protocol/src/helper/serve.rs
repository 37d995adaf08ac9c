//! The helper's side of the agent ↔ helper protocol ([`crate::helper`]): read a request from
//! the agent's pipe, ask the backend, write the reply (and a frame's pixels) back. It ends when
//! the agent closes the pipe.

use super::backend::{Backend, Capture};
use super::{FrameHeader, FromHelper, HELPER_VERSION, MESSAGE_LIMIT, ToHelper};
use crate::{codec, frame};
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("pipe to the agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("message from the agent: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("message from the agent: {0}")]
    Frame(#[from] frame::FrameError),
}

/// One message (either way), or `None` when the stream ends before it starts. Its length is
/// checked against [`MESSAGE_LIMIT`] before anything is allocated.
pub fn read_message<T: DeserializeOwned>(rd: &mut impl Read) -> Result<Option<T>, ServeError> {
    let mut header = [0u8; frame::HEADER_LEN];
    match rd.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame::payload_len(header, MESSAGE_LIMIT)?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload)?;
    Ok(Some(codec::from_payload(&payload)?))
}

fn write_message(wr: &mut impl Write, msg: &FromHelper) -> Result<(), ServeError> {
    wr.write_all(&codec::to_frame(msg, MESSAGE_LIMIT)?)?;
    Ok(())
}

/// Serves requests until the agent closes standard input.
pub fn serve(
    backend: &mut dyn Backend,
    rd: &mut impl Read,
    wr: &mut impl Write,
) -> Result<(), ServeError> {
    write_message(
        wr,
        &FromHelper::Hello {
            version: HELPER_VERSION,
            backend: backend.name().to_string(),
            compositor: backend.compositor(),
        },
    )?;
    wr.flush()?;
    while let Some(req) = read_message::<ToHelper>(rd)? {
        match answer(backend, req) {
            Reply::Message(m) => write_message(wr, &m)?,
            Reply::Frame(header, pixels) => {
                write_message(wr, &FromHelper::Frame(header))?;
                wr.write_all(&pixels)?;
            }
        }
        wr.flush()?;
    }
    backend.stop_capture();
    Ok(())
}

enum Reply {
    Message(FromHelper),
    Frame(FrameHeader, Vec<u8>),
}

fn answer(backend: &mut dyn Backend, req: ToHelper) -> Reply {
    let done = |r: Result<(), _>| match r {
        Ok(()) => FromHelper::Done,
        Err(e) => FromHelper::Error(e),
    };
    Reply::Message(match req {
        ToHelper::Displays => match backend.displays() {
            Ok(d) => FromHelper::Displays(d),
            Err(e) => FromHelper::Error(e),
        },
        ToHelper::Capture { display } => match backend.capture(display) {
            Ok(Capture::Unchanged) => FromHelper::Unchanged,
            Ok(Capture::Frame(f)) => {
                let expected = f.width as usize * f.height as usize * 4;
                if f.pixels.len() != expected {
                    FromHelper::Error(super::HelperError::Capture(format!(
                        "frame of {} bytes for {}×{}",
                        f.pixels.len(),
                        f.width,
                        f.height
                    )))
                } else {
                    return Reply::Frame(
                        FrameHeader {
                            width: f.width,
                            height: f.height,
                            damage: f.damage,
                        },
                        f.pixels,
                    );
                }
            }
            Err(e) => FromHelper::Error(e),
        },
        ToHelper::StopCapture => {
            backend.stop_capture();
            FromHelper::Done
        }
        ToHelper::Input(ev) => done(backend.input(&ev)),
        ToHelper::Pointer => FromHelper::Pointer(backend.pointer()),
        ToHelper::GetClipboard => match backend.get_clipboard() {
            Ok(t) => FromHelper::Clipboard(t),
            Err(e) => FromHelper::Error(e),
        },
        ToHelper::SetClipboard(t) => done(backend.set_clipboard(t)),
    })
}
