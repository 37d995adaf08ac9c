//! The clipboard on wlroots through `wlr-data-control`: a privileged client's view of the
//! selection, which (unlike `wl_data_device`) needs no keyboard focus, so the helper can read and
//! set it without a window.
//!
//! Pastes of text we set are answered when the connection is dispatched, that is while the
//! helper serves a request (the agent asks for frames ~30 times a second while streaming); the
//! bytes are written on a short-lived thread so a slow reader holds nothing up.

use super::{State, Wlr, wayland_error};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_protocol::helper::{HelperError, MAX_CLIPBOARD};
use wayland_client::{Connection, Dispatch, QueueHandle, event_created_child};
use wayland_protocols_wlr::data_control::v1::client::{
    zwlr_data_control_device_v1::{self, ZwlrDataControlDeviceV1},
    zwlr_data_control_manager_v1::ZwlrDataControlManagerV1,
    zwlr_data_control_offer_v1::{self, ZwlrDataControlOfferV1},
    zwlr_data_control_source_v1::{self, ZwlrDataControlSourceV1},
};

/// Text types, best first: what we offer and what we ask for.
const TEXT_TYPES: [&str; 5] = [
    "text/plain;charset=utf-8",
    "UTF8_STRING",
    "text/plain",
    "STRING",
    "TEXT",
];

/// How long the selection's owner may take to hand over its text.
const READ_WAIT: Duration = Duration::from_secs(2);

/// The selection as the data-control device reports it, and the text we offer.
#[derive(Default)]
pub(super) struct ClipState {
    device: Option<ZwlrDataControlDeviceV1>,
    /// Offers announced and not yet dropped, with their types.
    offers: Vec<(ZwlrDataControlOfferV1, Vec<String>)>,
    /// The current selection (`None`: empty clipboard).
    selection: Option<ZwlrDataControlOfferV1>,
    /// Our own selection while the compositor keeps it.
    source: Option<(ZwlrDataControlSourceV1, Arc<str>)>,
}

fn clip_error(e: impl std::fmt::Display) -> HelperError {
    HelperError::Clipboard(wayland_error("data control", e))
}

impl Wlr {
    /// The data-control device of the seat, made on first use (the compositor then reports
    /// the current selection, which the roundtrip collects).
    fn clipboard_device(&mut self) -> Result<(), HelperError> {
        if self.state.clip.device.is_none() {
            let unsupported = |what: &str| {
                HelperError::Unsupported(format!(
                    "clipboard on wlroots: the compositor has no {what}"
                ))
            };
            let manager = self
                .state
                .data_control
                .clone()
                .ok_or_else(|| unsupported("zwlr_data_control_manager_v1"))?;
            let seat = self
                .state
                .seat
                .clone()
                .ok_or_else(|| unsupported("wl_seat"))?;
            self.state.clip.device = Some(manager.get_data_device(&seat, &self.qh, ()));
        }
        // Up to date with selections made since the last call.
        self.roundtrip().map_err(clip_error)
    }

    pub(super) fn read_clipboard(&mut self) -> Result<String, HelperError> {
        self.clipboard_device()?;
        let clip = &self.state.clip;
        if let Some((_, text)) = &clip.source {
            // Our own selection: asking ourselves through a pipe would wait on this very thread.
            return Ok(text.to_string());
        }
        let Some(offer) = clip.selection.clone() else {
            return Ok(String::new());
        };
        let types = clip
            .offers
            .iter()
            .find(|(o, _)| *o == offer)
            .map(|(_, t)| t.as_slice())
            .unwrap_or_default();
        let Some(mime) = TEXT_TYPES.iter().find(|t| types.iter().any(|m| m == *t)) else {
            return Err(HelperError::Clipboard("the clipboard holds no text".into()));
        };
        let (reader, writer) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(clip_error)?;
        offer.receive(mime.to_string(), writer.as_fd());
        self.conn.flush().map_err(clip_error)?;
        // Our copy of the write end must go, or the read never sees the end.
        drop(writer);
        let text = read_bounded(File::from(reader), Instant::now() + READ_WAIT)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    pub(super) fn write_clipboard(&mut self, text: String) -> Result<(), HelperError> {
        if text.len() > MAX_CLIPBOARD {
            return Err(HelperError::Clipboard(format!(
                "text of {} bytes is over the limit of {MAX_CLIPBOARD}",
                text.len()
            )));
        }
        self.clipboard_device()?;
        let (Some(manager), Some(device)) = (
            self.state.data_control.clone(),
            self.state.clip.device.clone(),
        ) else {
            return Err(HelperError::Clipboard("no data-control device".into()));
        };
        let source = manager.create_data_source(&self.qh, ());
        for t in TEXT_TYPES {
            source.offer(t.to_string());
        }
        device.set_selection(Some(&source));
        if let Some((old, _)) = self.state.clip.source.replace((source, text.into())) {
            old.destroy();
        }
        self.roundtrip().map_err(clip_error)
    }

    pub(super) fn drop_clipboard(&mut self) {
        let clip = std::mem::take(&mut self.state.clip);
        for (offer, _) in clip.offers {
            offer.destroy();
        }
        if let Some((source, _)) = clip.source {
            // The selection we set ends with us: an app would otherwise ask a dead helper.
            source.destroy();
        }
        if let Some(device) = clip.device {
            device.destroy();
        }
    }
}

/// Everything the pipe gives until its end, at most [`MAX_CLIPBOARD`] bytes, by `deadline`.
fn read_bounded(mut file: File, deadline: Instant) -> Result<Vec<u8>, HelperError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HelperError::Clipboard(
                "the clipboard's owner did not hand over its text in time".into(),
            ));
        }
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&file, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(clip_error(e)),
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_CLIPBOARD {
                    return Err(HelperError::Clipboard(format!(
                        "the clipboard holds more than {MAX_CLIPBOARD} bytes"
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(HelperError::Clipboard(format!(
                    "reading the clipboard: {e}"
                )));
            }
        }
    }
}

impl Dispatch<ZwlrDataControlManagerV1, ()> for State {
    fn event(
        _: &mut Self,
        _: &ZwlrDataControlManagerV1,
        _: <ZwlrDataControlManagerV1 as wayland_client::Proxy>::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<ZwlrDataControlDeviceV1, ()> for State {
    fn event(
        s: &mut Self,
        _: &ZwlrDataControlDeviceV1,
        event: zwlr_data_control_device_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwlr_data_control_device_v1::Event as E;
        let clip = &mut s.clip;
        match event {
            E::DataOffer { id } => clip.offers.push((id, Vec::new())),
            E::Selection { id } => {
                // The previous selection's offer is dead now; so is any offer never selected.
                for (offer, _) in clip.offers.iter().filter(|(o, _)| Some(o) != id.as_ref()) {
                    offer.destroy();
                }
                clip.offers.retain(|(o, _)| Some(o) == id.as_ref());
                clip.selection = id;
            }
            E::Finished => {
                // The seat went away: the device is void; the next call makes a new one.
                if let Some(device) = clip.device.take() {
                    device.destroy();
                }
                clip.selection = None;
            }
            _ => {}
        }
    }

    event_created_child!(State, ZwlrDataControlDeviceV1, [
        zwlr_data_control_device_v1::EVT_DATA_OFFER_OPCODE => (ZwlrDataControlOfferV1, ()),
    ]);
}

impl Dispatch<ZwlrDataControlOfferV1, ()> for State {
    fn event(
        s: &mut Self,
        offer: &ZwlrDataControlOfferV1,
        event: zwlr_data_control_offer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwlr_data_control_offer_v1::Event::Offer { mime_type } = event
            && let Some((_, types)) = s.clip.offers.iter_mut().find(|(o, _)| o == offer)
            // Bounded: an owner announcing endless types gets no more memory.
            && types.len() < 64
        {
            types.push(mime_type);
        }
    }
}

impl Dispatch<ZwlrDataControlSourceV1, ()> for State {
    fn event(
        s: &mut Self,
        source: &ZwlrDataControlSourceV1,
        event: zwlr_data_control_source_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let ours = s.clip.source.as_ref().filter(|(o, _)| o == source);
        match event {
            zwlr_data_control_source_v1::Event::Send { fd, .. } => {
                let Some((_, text)) = ours else {
                    return; // An old source: closing the fd ends the reader's wait.
                };
                let text = Arc::clone(text);
                let writer = std::thread::Builder::new()
                    .name("clipboard-send".into())
                    .spawn(move || {
                        if let Err(e) = File::from(fd).write_all(text.as_bytes()) {
                            tracing::debug!("handing over the clipboard: {e}");
                        }
                    });
                if let Err(e) = writer {
                    tracing::warn!("no thread to hand over the clipboard: {e}");
                }
            }
            zwlr_data_control_source_v1::Event::Cancelled => {
                // Someone else set the clipboard: ours is gone.
                source.destroy();
                if ours.is_some() {
                    s.clip.source = None;
                }
            }
            _ => {}
        }
    }
}
