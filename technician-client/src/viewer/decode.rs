//! The viewer's decoder, on a thread of its own (`viewer-decode`): it takes the agent's messages,
//! decodes frames (zstd and raw tiles, H.264) into its copy of the screen, acknowledges each
//! frame as soon as it is applied (the agent's flow-control credit), and publishes what changed
//! in a [`Screen`] shared with the window: the screen as egui pixels plus the regions changed
//! since the window last uploaded. Then it wakes the window, which only uploads those regions
//! and draws.

use super::present::Presenter;
use crate::remote::{RectDecoder, is_xor, pixels_len};
use eframe::egui::{self, Color32, ColorImage};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tether_protocol::session::{Compression, Deltas, FrameUpdate, ToAgent, ToViewer};
use tether_protocol::text::clean;
use tether_protocol::tiles::{Rect, patch, patch_xor};
use tokio::sync::mpsc;

/// More changed regions than this waiting for the window merge into their bounding box.
const MAX_REGIONS: usize = 32;

/// What changed on the screen since the window last uploaded it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    #[default]
    None,
    Regions(Vec<Rect>),
    /// A new size or a whole-screen picture (H.264): upload all of it.
    Full,
}

impl Damage {
    fn add(&mut self, r: Rect) {
        match self {
            Damage::Full => {}
            Damage::None => *self = Damage::Regions(vec![r]),
            Damage::Regions(v) => {
                v.push(r);
                if v.len() > MAX_REGIONS {
                    let b = bounding_box(v);
                    *v = vec![b];
                }
            }
        }
    }
}

fn bounding_box(v: &[Rect]) -> Rect {
    let x0 = v.iter().map(|r| r.x).min().unwrap_or(0);
    let y0 = v.iter().map(|r| r.y).min().unwrap_or(0);
    let x1 = v.iter().map(|r| r.x + r.w).max().unwrap_or(0);
    let y1 = v.iter().map(|r| r.y + r.h).max().unwrap_or(0);
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// What the window must act on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The remote clipboard's text, to put on the local clipboard.
    Clipboard(String),
    /// A line for the status bar.
    Status(String),
    /// The session is over (the agent's goodbye, or a frame the viewer refuses).
    Ended(String),
}

/// The screen and session state the decoder shares with the window.
#[derive(Default)]
pub(crate) struct Screen {
    pub width: u32,
    pub height: u32,
    /// The whole screen, row by row, opaque.
    pub pixels: Vec<Color32>,
    /// Changed since the window's last upload.
    pub damage: Damage,
    /// The remote pointer's position.
    pub cursor: Option<(i32, i32)>,
    /// A new pointer image (and hot spot) the window has not taken yet.
    pub cursor_shape: Option<(ColorImage, (u16, u16))>,
    pub events: Vec<Event>,
    /// When the oldest input not yet followed by a frame was sent (set by the window).
    pub input_sent: Option<Instant>,
    /// Smoothed input-to-frame latency.
    pub latency_ms: f32,
    /// Frames, their payload bytes and encode times since the window last took them.
    pub frames: u32,
    pub bytes: u64,
    pub encode_us: u64,
}

pub(crate) type Shared = Arc<Mutex<Screen>>;

/// The shared screen (a panic elsewhere does not make it unusable: it holds plain data).
pub(crate) fn lock(shared: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Decoder {
    shared: Shared,
    to_agent: mpsc::UnboundedSender<ToAgent>,
    /// The screen as the agent sends it (BGRX), which XOR deltas apply to.
    pub(crate) fb: Vec<u8>,
    width: u32,
    height: u32,
    /// H.264 decoder, made when the first H.264 frame arrives.
    h264: Option<openh264::decoder::Decoder>,
    /// The lossless rectangles' decoder (it keeps the last palette).
    rects: RectDecoder,
    /// What compact frames leave out ([`ToViewer::Delta`]).
    deltas: Deltas,
    /// A decoded H.264 picture (RGBA), kept to reuse its allocation.
    rgba: Vec<u8>,
    /// Draws changes straight into the viewer's window, when it can (`present.rs`).
    pub(crate) presenter: Option<std::sync::Arc<Presenter>>,
}

impl Decoder {
    pub(crate) fn new(shared: Shared, to_agent: mpsc::UnboundedSender<ToAgent>) -> Self {
        Decoder {
            shared,
            to_agent,
            fb: Vec::new(),
            width: 0,
            height: 0,
            h264: None,
            rects: RectDecoder::default(),
            deltas: Deltas::default(),
            rgba: Vec::new(),
            presenter: None,
        }
    }

    /// Runs on a thread of its own until the agent's side of the session ends, waking the
    /// window (`ctx`) after each batch of messages.
    pub(crate) fn spawn(
        mut self,
        mut from_agent: mpsc::Receiver<ToViewer>,
        ctx: egui::Context,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("viewer-decode".into())
            .spawn(move || {
                while let Some(msg) = from_agent.blocking_recv() {
                    self.handle(msg);
                    // Whatever else is already here goes into the same wake-up.
                    while let Ok(msg) = from_agent.try_recv() {
                        self.handle(msg);
                    }
                    // While the screen is drawn natively, frames need no repaint of the window:
                    // only the statistics, once a second. Events still show at once.
                    let native = self.presenter.as_ref().is_some_and(|p| p.showing());
                    if native && lock(&self.shared).events.is_empty() {
                        ctx.request_repaint_after(Duration::from_secs(1));
                    } else {
                        ctx.request_repaint();
                    }
                }
                // The session is over: one more frame shows it.
                ctx.request_repaint();
            })
            .map(|_| ())
    }

    fn event(&self, e: Event) {
        lock(&self.shared).events.push(e);
    }

    /// Applies one message from the agent.
    pub(crate) fn handle(&mut self, msg: ToViewer) {
        match msg {
            ToViewer::Frame(f) => self.frame(f),
            ToViewer::Delta(d) => match self.deltas.expand(d) {
                Ok(f) => self.frame(f),
                Err(e) => self.event(Event::Ended(e.to_string())),
            },
            ToViewer::Cursor { x, y } => {
                lock(&self.shared).cursor = Some((x, y));
                if let Some(p) = &self.presenter {
                    p.pointer_moved((x, y));
                }
            }
            ToViewer::CursorShape {
                width,
                height,
                hot_x,
                hot_y,
                rgba,
            } => {
                let (w, h) = (usize::from(width), usize::from(height));
                if rgba.len() == w * h * 4 && w > 0 && h > 0 {
                    if let Some(p) = &self.presenter {
                        p.pointer_shape(&rgba, width, height, (hot_x, hot_y));
                    }
                    let img = ColorImage::from_rgba_premultiplied([w, h], &rgba);
                    lock(&self.shared).cursor_shape = Some((img, (hot_x, hot_y)));
                }
            }
            ToViewer::Clipboard { text } => self.event(Event::Clipboard(text)),
            ToViewer::Error { message } => self.event(Event::Status(clean(&message, 200))),
            ToViewer::Bye { reason } => self.event(Event::Ended(clean(&reason, 200))),
            // Answers to requests this window never makes.
            _ => {}
        }
    }

    fn frame(&mut self, f: FrameUpdate) {
        let arrived = Instant::now();
        let resized = f.width != self.width || f.height != self.height;
        if resized {
            // The size comes from the device: bounded before anything is allocated.
            match pixels_len(f.width, f.height) {
                Ok(len) => {
                    self.width = f.width;
                    self.height = f.height;
                    self.fb = vec![0; len];
                }
                Err(e) => {
                    self.event(Event::Ended(e.to_string()));
                    return;
                }
            }
        }
        let (w, h) = (self.width, self.height);
        let mut whole = resized;
        let mut changed = Vec::with_capacity(f.rects.len());
        let mut bytes = 0u64;
        let mut status = None;
        for r in &f.rects {
            bytes += r.data.len() as u64;
            if r.compression == Compression::CopyRect {
                // Rows this picture already has, moved (a scroll): applied in order, before
                // the pixels that follow it.
                match tether_protocol::scroll::CopyRows::from_rect(r) {
                    Some(c) if tether_protocol::scroll::apply(&mut self.fb, w, h, &c) => {
                        changed.push(c.dst());
                    }
                    _ => status = Some("a copy outside the picture".to_string()),
                }
                continue;
            }
            if r.compression == Compression::H264 {
                match self.decode_h264(&r.data) {
                    Ok(true) => whole = true,
                    Ok(false) => {}
                    Err(e) => status = Some(e),
                }
                continue;
            }
            let applied = self
                .rects
                .decode(r)
                .map_err(|e| e.to_string())
                .and_then(|px| {
                    if is_xor(r.compression) {
                        patch_xor(&mut self.fb, w, h, r.rect, &px)
                    } else {
                        patch(&mut self.fb, w, h, r.rect, &px)
                    }
                    .map_err(|e| e.to_string())
                });
            match applied {
                Ok(()) => changed.push(r.rect),
                Err(e) => status = Some(e),
            }
        }
        if let Some(p) = &self.presenter {
            p.frame(&self.fb, w, h, (!whole).then_some(&changed[..]));
        }
        {
            let mut s = lock(&self.shared);
            if resized {
                s.width = w;
                s.height = h;
                s.pixels = vec![Color32::BLACK; w as usize * h as usize];
            }
            if whole {
                to_pixels(&self.fb, w, &mut s.pixels, Rect { x: 0, y: 0, w, h });
                s.damage = Damage::Full;
            } else {
                for r in changed {
                    to_pixels(&self.fb, w, &mut s.pixels, r);
                    s.damage.add(r);
                }
            }
            if let Some(t) = s.input_sent.take() {
                let ms = arrived.saturating_duration_since(t).as_secs_f32() * 1000.0;
                s.latency_ms = if s.latency_ms == 0.0 {
                    ms
                } else {
                    0.8 * s.latency_ms + 0.2 * ms
                };
            }
            s.frames += 1;
            s.bytes += bytes;
            s.encode_us += u64::from(f.encode_us);
            if let Some(e) = status {
                s.events.push(Event::Status(e));
            }
        }
        let _ = self.to_agent.send(ToAgent::FrameAck { seq: f.seq });
    }

    /// Decodes one whole-screen H.264 frame into the framebuffer; true when it held a picture.
    fn decode_h264(&mut self, data: &[u8]) -> Result<bool, String> {
        use openh264::formats::YUVSource;
        if self.h264.is_none() {
            self.h264 = Some(
                openh264::decoder::Decoder::with_api_config(
                    openh264::OpenH264API::from_source(),
                    openh264::decoder::DecoderConfig::new(),
                )
                .map_err(|e| e.to_string())?,
            );
        }
        let Some(dec) = self.h264.as_mut() else {
            return Ok(false);
        };
        let Some(yuv) = dec.decode(data).map_err(|e| format!("H.264: {e}"))? else {
            return Ok(false);
        };
        let (w, h) = (self.width as usize, self.height as usize);
        if yuv.dimensions() != (w, h) {
            return Err("H.264 frame size does not match the screen".into());
        }
        self.rgba.resize(w * h * 4, 0);
        yuv.write_rgba8(&mut self.rgba);
        for (dst, src) in self.fb.chunks_exact_mut(4).zip(self.rgba.chunks_exact(4)) {
            dst.copy_from_slice(&[src[2], src[1], src[0], 0]);
        }
        Ok(true)
    }
}

/// Copies rectangle `r` of the BGRX framebuffer `fb` (`width` wide) into `pixels`. `r` has
/// been checked against the screen (it was patched).
fn to_pixels(fb: &[u8], width: u32, pixels: &mut [Color32], r: Rect) {
    let (width, x, w) = (width as usize, r.x as usize, r.w as usize);
    for y in r.y as usize..(r.y + r.h) as usize {
        let at = y * width + x;
        let (Some(src), Some(dst)) = (fb.get(at * 4..(at + w) * 4), pixels.get_mut(at..at + w))
        else {
            return;
        };
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = Color32::from_rgb(s[2], s[1], s[0]);
        }
    }
}

/// Rectangle `r` of `pixels` (`width` wide) as an image of its own.
pub(crate) fn sub_image(pixels: &[Color32], width: u32, r: Rect) -> ColorImage {
    let (width, x, w) = (width as usize, r.x as usize, r.w as usize);
    let mut out = Vec::with_capacity(w * r.h as usize);
    for y in r.y as usize..(r.y + r.h) as usize {
        let at = y * width + x;
        out.extend_from_slice(&pixels[at..at + w]);
    }
    ColorImage::new([w, r.h as usize], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn many_regions_merge_into_their_bounding_box() {
        let mut d = Damage::None;
        d.add(rect(64, 0, 64, 64));
        d.add(rect(0, 128, 64, 64));
        assert_eq!(
            d,
            Damage::Regions(vec![rect(64, 0, 64, 64), rect(0, 128, 64, 64)])
        );
        // The 33rd region merges all of them.
        for i in 0..MAX_REGIONS as u32 - 1 {
            d.add(rect(i * 10, 300, 10, 10));
        }
        assert_eq!(d, Damage::Regions(vec![rect(0, 0, 310, 310)]));
        let mut full = Damage::Full;
        full.add(rect(0, 0, 1, 1));
        assert_eq!(full, Damage::Full);
    }

    #[test]
    fn sub_image_copies_the_rows_of_a_rectangle() {
        let px: Vec<Color32> = (0..16u8).map(Color32::from_gray).collect();
        let img = sub_image(&px, 4, rect(1, 2, 2, 2));
        assert_eq!(img.size, [2, 2]);
        let got: Vec<u8> = img.pixels.iter().map(|c| c.r()).collect();
        assert_eq!(got, [9, 10, 13, 14]);
    }
}
