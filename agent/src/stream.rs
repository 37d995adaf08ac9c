//! Streaming a display to the viewer. A capture thread owns the desktop's [`ScreenSource`]
//! (X11's cannot move between threads), its [`Pointer`] and the encoder; per frame it decides what to send:
//!
//! * nothing changed: nothing, or a lossless refresh of the whole screen if the viewer last got a
//!   lossy H.264 frame (so text ends crisp when motion stops);
//! * a small part changed: the changed runs of 64×64 tiles, tightened to the pixels that changed,
//!   each zstd of its XOR against the previous frame (lossless, and mostly zeros for typing);
//! * a large part changed (scrolling a page, video, animation) and the viewer decodes H.264: one
//!   H.264 frame of the whole screen.
//!
//! The async side sends frames while flow-control credit lasts and the pointer position
//! separately, so moving the mouse resends no pixels.

use crate::platform::{
    Damage, Desktop, Pointer, PointerImage, ScreenError, ScreenSource, WindowMove,
};
use openh264::encoder::{Encoder, EncoderConfig, RateControlMode, UsageType};
use openh264::formats::{BgraSliceU8, YUVBuffer};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tether_protocol::indexed::Memory;
use tether_protocol::session::{Compression, Deltas, EncodedRect, FrameUpdate, ToViewer};
use tether_protocol::tiles::{
    FlowControl, Rect, changed_rects, changed_rects_within, extract, tighten, xor,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// How often the screen is polled for changes when nothing changed…
const POLL: Duration = Duration::from_millis(15);
/// …and how often when the source wakes the capture for drawings and for the pointer alike
/// (then a still screen costs a few wake-ups a second; the lossless refresh after motion
/// comes at most this late).
const STILL_POLL: Duration = Duration::from_millis(100);
/// After the source said something is being drawn, a grab waits until nothing more was drawn
/// for this long (a key's echo and its cursor go as one frame)…
const COALESCE: Duration = Duration::from_millis(2);
/// …but no longer than this.
const COALESCE_MAX: Duration = Duration::from_millis(10);
/// Share of the screen that must change for a frame to go as H.264.
const MOTION_SHARE: f64 = 0.3;
/// H.264 target bit rate.
const H264_BPS: u32 = 4_000_000;
/// The frame rate the H.264 rate control plans for on a capped link.
const CAPPED_FPS: f32 = 10.0;
/// A change this small a share of the screen (or smaller), in at most [`PARTIAL_RECTS`] areas,
/// is read from the screen alone instead of capturing it whole (a key's echo: a few hundred
/// pixels, not a million).
const PARTIAL_SHARE: u64 = 16;
const PARTIAL_RECTS: usize = 64;
/// How long the screen must stay still after lossy frames before the lossless refresh.
const SETTLE: Duration = Duration::from_millis(250);
/// Small changes this long after the last large one are sent exactly, with a band of the
/// screen each ([`Coder::refresh_band`]), even while the screen is not still…
const REFRESH_AFTER: Duration = Duration::from_millis(100);
/// …this many rows a band.
const REFRESH_BAND: u32 = 64;

/// What one capture produced.
struct Grab {
    update: Option<(u32, u32, Vec<EncodedRect>)>,
    cursor: Option<(i32, i32)>,
    /// A new pointer image, when it changed since the last grab.
    shape: Option<ToViewer>,
    encode_us: u32,
}

/// The pointer's image for the viewer.
fn cursor_shape(img: PointerImage) -> ToViewer {
    ToViewer::CursorShape {
        width: img.width,
        height: img.height,
        hot_x: img.hot_x,
        hot_y: img.hot_y,
        rgba: img.rgba,
    }
}

/// A request for a grab: with `true`, first wait up to [`POLL`] for the screen to change (the
/// last grab found nothing new); then the H.264 bit rate to aim for (below the link's cap).
type GrabReply = (bool, u32, oneshot::Sender<Result<Grab, ScreenError>>);

/// Why the H.264 encoder gave no frame.
#[derive(Debug, thiserror::Error)]
enum H264Error {
    #[error(transparent)]
    Encoder(#[from] openh264::Error),
    #[error("no encoder")]
    NoEncoder,
}

/// What the viewer decodes beyond lossless zstd and XOR tiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encodings {
    pub h264: bool,
    /// Palette rectangles ([`Palettes`]).
    pub palette: Palettes,
    /// [`Compression::CopyRect`] (`stream_feature::COPY_RECT`).
    pub copy_rect: bool,
    /// [`Compression::CopyRect`] across, for moved windows (`stream_feature::MOVE_RECT`).
    pub move_rect: bool,
    /// The viewer's bandwidth cap in kilobits per second ([`tether_protocol::pace`]).
    pub max_kbps: Option<u32>,
}

/// What a rectangle costs on the wire beside its data (its place, kind and length).
const RECT_OVERHEAD: usize = 12;
/// The changed rectangles are sent as one covering them when that is smaller, if it is at most
/// this many times their area.
const COVER_RATIO: u64 = 4;

/// The changed `rects` of `pixels` (tightened to what changed against `base`, what the viewer
/// holds) in their smallest lossless form: each on its own, or one rectangle covering them
/// all when that is smaller (a dragged window leaves an L of thin strips: one XOR that is
/// mostly zeros costs less than eight small ones).
fn lossless_rects(
    base: &[u8],
    pixels: &[u8],
    w: u32,
    rects: Vec<Rect>,
    forms: Palettes,
    memory: &mut Memory,
) -> Vec<EncodedRect> {
    let mut tight: Vec<Rect> = Vec::with_capacity(rects.len());
    for r in rects.into_iter().map(|r| tighten(base, pixels, w, r)) {
        // A strip cut at each tile row (the edge a window uncovered) goes as one.
        match tight
            .iter_mut()
            .find(|t| t.x == r.x && t.w == r.w && t.y + t.h == r.y)
        {
            Some(t) => t.h += r.h,
            None => tight.push(r),
        }
    }
    // Each choice below may send a palette the next rectangle reuses: the memory follows the
    // rectangles that are sent, in order.
    let mut after_each = memory.clone();
    let each: Vec<EncodedRect> = tight
        .iter()
        .filter_map(|&r| lossless_rect(base, pixels, w, r, forms, &mut after_each))
        .collect();
    if each.len() < 2 {
        *memory = after_each;
        return each;
    }
    let (x0, y0) = tight
        .iter()
        .fold((u32::MAX, u32::MAX), |(x, y), r| (x.min(r.x), y.min(r.y)));
    let (x1, y1) = tight
        .iter()
        .fold((0, 0), |(x, y), r| (x.max(r.x + r.w), y.max(r.y + r.h)));
    let cover = Rect {
        x: x0,
        y: y0,
        w: x1.saturating_sub(x0),
        h: y1.saturating_sub(y0),
    };
    let area = |r: &Rect| u64::from(r.w) * u64::from(r.h);
    if area(&cover) > COVER_RATIO * tight.iter().map(area).sum::<u64>() {
        *memory = after_each;
        return each;
    }
    let cost = |v: &[EncodedRect]| {
        v.iter()
            .map(|r| r.data.len() + RECT_OVERHEAD)
            .sum::<usize>()
    };
    let mut after_one = memory.clone();
    match lossless_rect(base, pixels, w, cover, forms, &mut after_one) {
        Some(one) if cost(std::slice::from_ref(&one)) < cost(&each) => {
            *memory = after_one;
            vec![one]
        }
        _ => {
            *memory = after_each;
            each
        }
    }
}

/// The smallest lossless form of rectangle `r` of `pixels` (a `w`-wide frame): zstd of its XOR
/// against `base` (what the viewer holds), or, for a viewer that takes it, zstd of its palette
/// form when that is smaller (text: few colours).
fn lossless_rect(
    base: &[u8],
    pixels: &[u8],
    w: u32,
    r: Rect,
    forms: Palettes,
    memory: &mut Memory,
) -> Option<EncodedRect> {
    let cur = extract(pixels, w, r);
    let xored = xor(&cur, &extract(base, w, r));
    smaller_of(r, &xored, true, &cur, forms, memory)
}

/// Which forms beyond zstd and XOR a viewer takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Palettes {
    /// [`Compression::ZstdPalette`] (`stream_feature::PALETTE`).
    pub zstd: bool,
    /// [`Compression::Palette`], the form as it is (`stream_feature::RAW_PALETTE`): a solid
    /// strip or a typed character is a few bytes, less than zstd's own frame.
    pub raw: bool,
    /// [`Compression::Indexed`], [`Compression::ZstdIndexed`] and the plane forms
    /// (`stream_feature::COMPACT`), in place of the two above.
    pub compact: bool,
}

/// Rectangles up to this many pixels are also tried in the interleaved forms when the viewer
/// takes planes (larger ones go as planes only: compressing twice costs too much there).
const BOTH_LAYOUTS: u64 = 64 * 1024;
/// An indexed form this long or shorter is not worth zstd's frame.
const RAW_INDEXED: usize = 24;

/// Rectangle `r` in its smallest form: zstd of `data` (the pixels XOR the viewer's when
/// `xored`, else the `pixels` themselves) or of its planes, or a palette form of `pixels`,
/// among those the viewer takes. The chosen form's palette, if it has one, goes to `memory`.
fn smaller_of(
    r: Rect,
    data: &[u8],
    xored: bool,
    pixels: &[u8],
    forms: Palettes,
    memory: &mut Memory,
) -> Option<EncodedRect> {
    let zstd = |d: &[u8]| zstd::bulk::compress(d, 1).ok();
    let (plain_kind, planes_kind) = if xored {
        (Compression::ZstdXor, Compression::ZstdXorPlanes)
    } else {
        (Compression::Zstd, Compression::ZstdPlanes)
    };
    let both = u64::from(r.w) * u64::from(r.h) <= BOTH_LAYOUTS;
    let plain = (!forms.compact || both)
        .then(|| zstd(data))
        .flatten()
        .map(|d| (d, plain_kind));
    let planes = forms
        .compact
        .then(|| tether_protocol::planes::split(data).ok())
        .flatten()
        .and_then(|p| zstd(&p))
        .map(|d| (d, planes_kind));
    let mut candidates = vec![plain, planes];
    let mut indexed = None;
    if forms.compact {
        indexed = tether_protocol::indexed::encode(pixels, r.w, r.h, memory);
        if let Some(raw) = &indexed {
            if raw.len() > RAW_INDEXED {
                candidates.push(zstd(raw).map(|d| (d, Compression::ZstdIndexed)));
            }
            candidates.push(Some((raw.clone(), Compression::Indexed)));
        }
    } else if (forms.zstd || forms.raw)
        && let Some(form) = tether_protocol::palette::encode(pixels, r.w, r.h)
    {
        if forms.zstd {
            candidates.push(zstd(&form).map(|d| (d, Compression::ZstdPalette)));
        }
        if forms.raw {
            candidates.push(Some((form, Compression::Palette)));
        }
    }
    let (data, compression) = candidates
        .into_iter()
        .flatten()
        .min_by_key(|(d, _)| d.len())?;
    if matches!(compression, Compression::Indexed | Compression::ZstdIndexed)
        && let Some(raw) = &indexed
    {
        memory.learn(raw);
    }
    Some(EncodedRect {
        rect: r,
        compression,
        data,
    })
}

/// Encoder state kept on the capture thread.
struct Coder {
    h264: bool,
    /// The H.264 encoder's target: below the bandwidth cap, if there is one.
    h264_bps: u32,
    palette: Palettes,
    /// The last palette sent ([`Compression::Indexed`]), as the viewer holds it.
    indexed: Memory,
    copy_rect: bool,
    move_rect: bool,
    /// Windows the platform saw move lately, for the next [`Self::encode`].
    moves: Vec<WindowMove>,
    /// The frame before `last`, reused for the next partial capture, and where `last` may
    /// differ from it (`None`: anywhere).
    spare: Option<(Vec<u8>, Option<Vec<Rect>>)>,
    last: Option<Vec<u8>>,
    /// Width and height of `last`.
    last_dims: (u32, u32),
    /// The viewer holds `last` exactly (false after a lossy frame).
    viewer_exact: bool,
    /// When the screen last changed (for the refresh after motion).
    last_change: Instant,
    /// When a large part of the screen last changed (what goes as video).
    last_motion: Instant,
    /// While small changes follow video: the first row of the next band the viewer gets
    /// exactly ([`Self::refresh_band`]).
    refresh_row: u32,
    encoder: Option<(u32, u32, Encoder)>,
}

impl Coder {
    /// What to send when the source says nothing changed since the last capture, without
    /// capturing: nothing, or the lossless refresh once motion settled. `None` when there is no
    /// last frame to stand for the screen (then the caller captures).
    fn unchanged(&mut self, now: Instant) -> Option<(u32, u32, Option<Vec<EncodedRect>>)> {
        let (w, h) = self.last_dims;
        let last = self.last.take()?;
        let out = if self.viewer_exact || now.duration_since(self.last_change) < SETTLE {
            None
        } else {
            Some(self.full_lossless(&last, w, h))
        };
        self.last = Some(last);
        Some((w, h, out))
    }

    fn full_lossless(&mut self, pixels: &[u8], w: u32, h: u32) -> Vec<EncodedRect> {
        self.viewer_exact = true;
        self.refresh_row = 0;
        let r = Rect { x: 0, y: 0, w, h };
        // A screen of text and flat windows often has few enough colours for a palette.
        smaller_of(r, pixels, false, pixels, self.palette, &mut self.indexed)
            .into_iter()
            .collect()
    }

    /// A moved window or a scroll inside the changed `rects` as a copy of the rows the viewer
    /// has, then only the pixels the copy does not explain (lossless, against the picture after
    /// the copy). `None` when the viewer does not take copies, does not hold the last frame
    /// exactly, or nothing moved.
    fn copied(
        &mut self,
        pixels: &[u8],
        w: u32,
        h: u32,
        rects: &[Rect],
        moves: &[WindowMove],
    ) -> Option<Vec<EncodedRect>> {
        if !self.viewer_exact {
            return None;
        }
        let copy = self
            .moved_in(pixels, w, h, moves)
            .or_else(|| self.scroll_in(pixels, w, h, rects))?;
        let last = self.last.as_deref()?;
        let mut base = last.to_vec();
        if !tether_protocol::scroll::apply(&mut base, w, h, &copy) {
            return None;
        }
        let mut out = vec![copy.to_rect()];
        out.extend(lossless_rects(
            &base,
            pixels,
            w,
            changed_rects_within(Some(&base), pixels, w, h, rects),
            self.palette,
            &mut self.indexed,
        ));
        Some(out)
    }

    /// The largest part of a moved window that shows exactly what it showed at its old place,
    /// for a viewer that takes copies across.
    fn moved_in(
        &self,
        pixels: &[u8],
        w: u32,
        h: u32,
        moves: &[WindowMove],
    ) -> Option<tether_protocol::scroll::CopyRows> {
        if !self.move_rect {
            return None;
        }
        let last = self.last.as_deref().filter(|l| l.len() == pixels.len())?;
        moves
            .iter()
            .filter_map(|m| {
                tether_protocol::scroll::verify_move(last, pixels, w, h, m.from, m.to, m.size)
            })
            .max_by_key(|c| u64::from(c.w) * u64::from(c.h))
    }

    /// A band inside the changed `rects` that moved vertically since the last frame.
    fn scroll_in(
        &self,
        pixels: &[u8],
        w: u32,
        h: u32,
        rects: &[Rect],
    ) -> Option<tether_protocol::scroll::CopyRows> {
        if !self.copy_rect {
            return None;
        }
        let last = self.last.as_deref().filter(|l| l.len() == pixels.len())?;
        let (x0, y0) = rects
            .iter()
            .fold((u32::MAX, u32::MAX), |(x, y), r| (x.min(r.x), y.min(r.y)));
        let (x1, y1) = rects
            .iter()
            .fold((0, 0), |(x, y), r| (x.max(r.x + r.w), y.max(r.y + r.h)));
        let area = tighten(
            last,
            pixels,
            w,
            Rect {
                x: x0,
                y: y0,
                w: x1.checked_sub(x0)?,
                h: y1.checked_sub(y0)?,
            },
        );
        tether_protocol::scroll::detect(last, pixels, w, h, area)
    }

    /// Small changes after video, while the viewer's picture is still lossy: the changed
    /// `rects` as they are now (not XOR: the viewer's pixels there are not ours) and the next
    /// band of [`REFRESH_BAND`] rows of the screen, so the picture turns exact band by band
    /// while something keeps changing (a dragged window, a blinking caret), instead of staying
    /// on whole-screen video until the screen is still.
    fn refresh_band(&mut self, pixels: &[u8], w: u32, h: u32, rects: &[Rect]) -> Vec<EncodedRect> {
        let band = Rect {
            x: 0,
            y: self.refresh_row.min(h),
            w,
            h: REFRESH_BAND.min(h.saturating_sub(self.refresh_row)),
        };
        let mut out = Vec::with_capacity(rects.len() + 1);
        for &r in rects.iter().chain(std::iter::once(&band)) {
            if r.w == 0 || r.h == 0 {
                continue;
            }
            let cur = extract(pixels, w, r);
            out.extend(smaller_of(
                r,
                &cur,
                false,
                &cur,
                self.palette,
                &mut self.indexed,
            ));
        }
        self.refresh_row = band.y + band.h;
        if self.refresh_row >= h {
            self.viewer_exact = true;
            self.refresh_row = 0;
        }
        out
    }

    fn h264(&mut self, pixels: &[u8], w: u32, h: u32) -> Result<Vec<EncodedRect>, H264Error> {
        if self
            .encoder
            .as_ref()
            .is_none_or(|(ew, eh, _)| (*ew, *eh) != (w, h))
        {
            let mut cfg = EncoderConfig::new()
                .usage_type(UsageType::ScreenContentRealTime)
                .rate_control_mode(RateControlMode::Bitrate)
                .bitrate(openh264::encoder::BitRate::from_bps(self.h264_bps))
                .skip_frames(false);
            if self.h264_bps < H264_BPS {
                // On a capped link the frames come as fast as the link carries them: the rate
                // control sizes each for that pace, not for 30 per second.
                cfg = cfg.max_frame_rate(openh264::encoder::FrameRate::from_hz(CAPPED_FPS));
            }
            let enc = Encoder::with_api_config(openh264::OpenH264API::from_source(), cfg)?;
            self.encoder = Some((w, h, enc));
        }
        let Some((_, _, enc)) = self.encoder.as_mut() else {
            return Err(H264Error::NoEncoder);
        };
        let yuv = YUVBuffer::from_bgra8_source(BgraSliceU8::new(pixels, (w as usize, h as usize)));
        let data = enc.encode(&yuv)?.to_vec();
        self.viewer_exact = false;
        self.refresh_row = 0;
        Ok(vec![EncodedRect {
            rect: Rect { x: 0, y: 0, w, h },
            compression: Compression::H264,
            data,
        }])
    }

    /// An H.264 frame; if the encoder fails, H.264 is off for the session and the frame goes
    /// lossless.
    fn h264_or_lossless(&mut self, pixels: &[u8], w: u32, h: u32) -> Vec<EncodedRect> {
        match self.h264(pixels, w, h) {
            Ok(r) => r,
            Err(e) => {
                warn!("H.264 encoding failed, staying lossless: {e}");
                self.h264 = false;
                self.full_lossless(pixels, w, h)
            }
        }
    }

    /// What to send for a new capture. `damage` says where it may differ from the last one:
    /// where the source reports that nothing changed, no comparison is made.
    fn encode(
        &mut self,
        pixels: Vec<u8>,
        w: u32,
        h: u32,
        damage: &Damage,
        now: Instant,
    ) -> Option<Vec<EncodedRect>> {
        let same_size = self.last.as_ref().is_some_and(|l| l.len() == pixels.len());
        let moves = std::mem::take(&mut self.moves);
        let rects = match damage {
            Damage::Areas(areas) if same_size => {
                changed_rects_within(self.last.as_deref(), &pixels, w, h, areas)
            }
            _ => changed_rects(self.last.as_deref().filter(|_| same_size), &pixels, w, h),
        };
        // The share of the screen the changed rectangles cover.
        let area: u64 = rects.iter().map(|r| u64::from(r.w) * u64::from(r.h)).sum();
        let share = area as f64 / (f64::from(w) * f64::from(h)).max(1.0);
        if share > MOTION_SHARE {
            self.last_motion = now;
        }
        let out = if rects.is_empty() {
            if self.viewer_exact || now.duration_since(self.last_change) < SETTLE {
                None
            } else {
                Some(self.full_lossless(&pixels, w, h))
            }
        } else if self.h264 && same_size && !self.viewer_exact {
            self.last_change = now;
            if self.copy_rect && self.scroll_in(&pixels, w, h, &rects).is_some() {
                // A scroll while the viewer's picture is lossy: one exact picture now, and the
                // rest of the scroll goes as copies instead of video.
                Some(self.full_lossless(&pixels, w, h))
            } else if now.saturating_duration_since(self.last_motion) < REFRESH_AFTER {
                // Still in motion: stay on H.264.
                Some(self.h264_or_lossless(&pixels, w, h))
            } else {
                Some(self.refresh_band(&pixels, w, h, &rects))
            }
        } else if let Some(copied) = self.copied(&pixels, w, h, &rects, &moves) {
            self.last_change = now;
            Some(copied)
        } else {
            self.last_change = now;
            // On a capped link a whole screen goes as video first (a lossless one could hold
            // the link for seconds); the lossless refresh follows when the screen settles.
            let capped = self.h264_bps < H264_BPS;
            if self.h264 && (same_size || capped) && share > MOTION_SHARE {
                Some(self.h264_or_lossless(&pixels, w, h))
            } else if !same_size || !self.viewer_exact {
                Some(self.full_lossless(&pixels, w, h))
            } else {
                let base = self.last.as_deref().unwrap_or(&[]);
                Some(lossless_rects(
                    base,
                    &pixels,
                    w,
                    rects,
                    self.palette,
                    &mut self.indexed,
                ))
            }
        };
        let changed = match damage {
            Damage::Areas(a) if same_size => Some(a.clone()),
            _ => None,
        };
        self.spare = self.last.replace(pixels).map(|old| (old, changed));
        self.last_dims = (w, h);
        out
    }

    /// A copy of `last` to capture into: the frame before it brought up to date where the two
    /// differ (a few small areas while typing), or a whole copy.
    fn copy_of_last(&mut self) -> Option<Vec<u8>> {
        let last = self.last.as_deref()?;
        let w = self.last_dims.0 as usize;
        match self.spare.take() {
            Some((mut frame, Some(areas))) if frame.len() == last.len() => {
                for r in areas {
                    for y in r.y as usize..(r.y + r.h) as usize {
                        let start = (y * w + r.x as usize) * 4;
                        let end = start + r.w as usize * 4;
                        if let (Some(dst), Some(src)) =
                            (frame.get_mut(start..end), last.get(start..end))
                        {
                            dst.copy_from_slice(src);
                        }
                    }
                }
                Some(frame)
            }
            _ => Some(last.to_vec()),
        }
    }
}

/// Owns the capturer and encoder for one display on its own thread.
fn capture_thread(
    desktop: Arc<dyn Desktop>,
    display: u32,
    encodings: Encodings,
    requests: std_mpsc::Receiver<GrabReply>,
) {
    let mut screen: Box<dyn ScreenSource> = desktop.screen();
    let mut pointer: Option<Box<dyn Pointer>> = desktop.pointer();
    let mut coder = Coder {
        h264: encodings.h264,
        // Leave a fifth of a capped link for the lossless updates and the pointer.
        h264_bps: encodings
            .max_kbps
            .map_or(H264_BPS, |k| H264_BPS.min(k.saturating_mul(800))),
        palette: encodings.palette,
        indexed: Memory::default(),
        copy_rect: encodings.copy_rect,
        move_rect: encodings.move_rect,
        moves: Vec::new(),
        spare: None,
        last: None,
        last_dims: (0, 0),
        viewer_exact: true,
        last_change: Instant::now(),
        last_motion: Instant::now(),
        refresh_row: 0,
        encoder: None,
    };
    for (wait, h264_bps, reply) in requests {
        if h264_bps.abs_diff(coder.h264_bps) > coder.h264_bps / 10 * 3 {
            // The link's cap moved well away (a new stream starts with a key frame, so not for
            // every step): the next video frame starts one at the new rate.
            debug!(h264_bps, "H.264 rate");
            coder.h264_bps = h264_bps;
            coder.encoder = None;
        }
        // Between polls: a source that can tell when something is drawn wakes at once (a key's
        // echo is grabbed as soon as it is drawn); the others sleep the poll interval.
        if wait {
            let asleep = Instant::now();
            let poll = if screen.wakes_on_pointer(display) {
                STILL_POLL
            } else {
                POLL
            };
            if !screen.wait_damage(display, poll) {
                std::thread::sleep(POLL);
            } else if asleep.elapsed() < poll {
                // Woken by a drawing: let the application finish the update it is drawing
                // (a key's echo and cursor, a scroll step) so it goes as one frame.
                screen.settle(display, COALESCE, COALESCE_MAX);
            }
        }
        let started = Instant::now();
        let mut damage = screen.damage(display);
        // A source that says nothing changed is not captured at all (no copy of the screen).
        let skipped = match &damage {
            Damage::Areas(a) if a.is_empty() => coder.unchanged(Instant::now()),
            _ => None,
        };
        let grabbed = match skipped {
            Some(_) => None,
            None => Some(grab(screen.as_mut(), &mut coder, display, &damage)),
        };
        if grabbed.is_some() {
            if let Damage::Areas(areas) = &mut damage {
                areas.extend(screen.late_damage(display));
            }
            // Asked after the capture, so a move it shows is known (one seen after it is
            // offered again next time).
            coder.moves = screen.moves(display);
        }
        let (cursor, shape) = match pointer.as_mut().and_then(|p| p.poll()) {
            Some((pos, shape)) => (Some(pos), shape.map(cursor_shape)),
            None => (None, None),
        };
        let grabbed = match (skipped, grabbed) {
            (Some((w, h, rects)), _) => {
                let _ = reply.send(Ok(Grab {
                    update: rects.map(|r| (w, h, r)),
                    cursor,
                    shape,
                    encode_us: started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
                }));
                continue;
            }
            (None, Some(g)) => g,
            (None, None) => continue,
        };
        let result = grabbed.map(|(w, h, pixels)| {
            let update = coder
                .encode(pixels, w, h, &damage, Instant::now())
                .map(|rects| (w, h, rects));
            Grab {
                update,
                cursor,
                shape,
                encode_us: started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
            }
        });
        let _ = reply.send(result);
    }
}

/// A capture of `display`: when the `damage` is a small part of the screen, the last frame with
/// only those areas read again; else the whole screen.
fn grab(
    screen: &mut dyn ScreenSource,
    coder: &mut Coder,
    display: u32,
    damage: &Damage,
) -> Result<(u32, u32, Vec<u8>), ScreenError> {
    if let Damage::Areas(areas) = damage {
        let (w, h) = coder.last_dims;
        let area: u64 = areas.iter().map(|r| u64::from(r.w) * u64::from(r.h)).sum();
        let small = area.saturating_mul(PARTIAL_SHARE) <= u64::from(w) * u64::from(h);
        if !areas.is_empty()
            && areas.len() <= PARTIAL_RECTS
            && small
            && let Some(mut frame) = coder.copy_of_last()
            && screen.capture_areas(display, &mut frame, w, h, areas)?
        {
            return Ok((w, h, frame));
        }
    }
    screen.capture(display)
}

/// Streams `display` until `acks` closes. Frames go to `out`.
pub async fn run(
    desktop: Arc<dyn Desktop>,
    display: u32,
    max_in_flight: u8,
    encodings: Encodings,
    mut acks: mpsc::UnboundedReceiver<u64>,
    out: mpsc::Sender<ToViewer>,
) {
    let (req_tx, req_rx) = std_mpsc::channel::<GrabReply>();
    std::thread::Builder::new()
        .name(format!("capture-{display}"))
        .spawn(move || capture_thread(desktop, display, encodings, req_rx))
        .ok();
    let mut flow = FlowControl::new(u32::from(max_in_flight));
    let mut cursor: Option<(i32, i32)> = None;
    let mut deltas = encodings.palette.compact.then(Deltas::default);
    // The last grab found nothing to send: the next one waits for a change (up to a poll).
    let mut idle = false;
    // The cap: the viewer's, or what the link shows it carries, whichever is lower.
    let mut meter = tether_protocol::pace::LinkMeter::new();
    let mut cap = encodings.max_kbps;
    let mut pacer = cap.map(|k| tether_protocol::pace::Pacer::new(k, std::time::Instant::now()));
    loop {
        let found = match (encodings.max_kbps, meter.cap_kbps()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if found != cap {
            debug!(?found, "stream cap");
            cap = found;
            pacer = cap.map(|k| tether_protocol::pace::Pacer::new(k, std::time::Instant::now()));
        }
        // Within the bandwidth cap: the next capture waits until the link carried the last.
        if let Some(p) = pacer.as_mut() {
            let now = std::time::Instant::now();
            let ready = p.poll_ready(now);
            if ready > now {
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        // Take every acknowledgement that arrived.
        loop {
            match acks.try_recv() {
                Ok(seq) => {
                    flow.on_ack(seq);
                    meter.handle_ack(seq, std::time::Instant::now());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if !flow.can_send() {
            // No credit: wait for an acknowledgement rather than queue stale frames.
            let waiting = std::time::Instant::now();
            match acks.recv().await {
                Some(seq) => {
                    let now = std::time::Instant::now();
                    meter.handle_blocked(waiting, now);
                    flow.on_ack(seq);
                    meter.handle_ack(seq, now);
                    continue;
                }
                None => return,
            }
        }
        let (tx, rx) = oneshot::channel();
        // Leave a fifth of a capped link for the lossless updates and the pointer.
        let h264_bps = cap.map_or(H264_BPS, |k| H264_BPS.min(k.saturating_mul(800)));
        if req_tx.send((idle, h264_bps, tx)).is_err() {
            return;
        }
        let grab = match rx.await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                warn!("capture failed: {e}");
                let _ = out
                    .send(ToViewer::Error {
                        message: e.to_string(),
                    })
                    .await;
                return;
            }
            Err(_) => return,
        };
        if let Some(shape) = grab.shape
            && out.send(shape).await.is_err()
        {
            return;
        }
        if grab.cursor.is_some() && grab.cursor != cursor {
            cursor = grab.cursor;
            if let Some((x, y)) = cursor
                && out.send(ToViewer::Cursor { x, y }).await.is_err()
            {
                return;
            }
        }
        let Some((width, height, rects)) = grab.update else {
            idle = true;
            continue;
        };
        idle = false;
        let seq = flow.on_send();
        debug!(seq, rects = rects.len(), us = grab.encode_us, "frame");
        // The pixels plus what each update costs on the wire (header, framing, TLS).
        let bytes = rects.iter().map(|r| r.data.len() + 24).sum::<usize>() + 40;
        let now = std::time::Instant::now();
        meter.handle_sent(seq, bytes, now);
        if let Some(p) = pacer.as_mut() {
            p.handle_sent(now, bytes);
        }
        let update = FrameUpdate {
            seq,
            display,
            width,
            height,
            encode_us: grab.encode_us,
            rects,
        };
        let msg = match deltas.as_mut() {
            Some(d) => ToViewer::Delta(d.compact(update)),
            None => ToViewer::Frame(update),
        };
        if out.send(msg).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::tiles::{patch, patch_xor};

    fn coder(h264: bool) -> Coder {
        Coder {
            h264,
            h264_bps: H264_BPS,
            palette: Palettes::default(),
            indexed: Memory::default(),
            copy_rect: false,
            move_rect: false,
            moves: Vec::new(),
            spare: None,
            last: None,
            last_dims: (0, 0),
            viewer_exact: true,
            last_change: Instant::now(),
            last_motion: Instant::now(),
            refresh_row: 0,
            encoder: None,
        }
    }

    /// What a viewer keeps beside its picture: the H.264 decoder and the last palette.
    struct Viewer {
        h264: openh264::decoder::Decoder,
        memory: Memory,
    }

    impl Viewer {
        fn new() -> Self {
            Viewer {
                h264: openh264::decoder::Decoder::new().unwrap(),
                memory: Memory::default(),
            }
        }
    }

    /// A viewer's framebuffer, updated the way the viewer does.
    fn apply(fb: &mut Vec<u8>, w: u32, h: u32, rects: &[EncodedRect], dec: &mut Viewer) {
        if fb.len() != (w * h * 4) as usize {
            *fb = vec![0; (w * h * 4) as usize];
        }
        for r in rects {
            let len = (r.rect.w * r.rect.h * 4) as usize;
            match r.compression {
                Compression::H264 => {
                    use openh264::formats::YUVSource;
                    let yuv = dec.h264.decode(&r.data).unwrap().expect("a picture");
                    assert_eq!(yuv.dimensions(), (w as usize, h as usize));
                    let mut rgba = vec![0; (w * h * 4) as usize];
                    yuv.write_rgba8(&mut rgba);
                    for (d, s) in fb.chunks_exact_mut(4).zip(rgba.chunks_exact(4)) {
                        d.copy_from_slice(&[s[2], s[1], s[0], 0]);
                    }
                }
                Compression::ZstdXor => {
                    let px = zstd::bulk::decompress(&r.data, len).unwrap();
                    patch_xor(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::ZstdXorPlanes => {
                    let p = zstd::bulk::decompress(&r.data, len).unwrap();
                    let px = tether_protocol::planes::join(&p).unwrap();
                    patch_xor(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::ZstdPlanes => {
                    let p = zstd::bulk::decompress(&r.data, len).unwrap();
                    let px = tether_protocol::planes::join(&p).unwrap();
                    patch(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::CopyRect => {
                    let c = tether_protocol::scroll::CopyRows::from_rect(r).unwrap();
                    assert!(tether_protocol::scroll::apply(fb, w, h, &c));
                }
                Compression::ZstdPalette => {
                    let bound = tether_protocol::palette::max_encoded_len(r.rect.w, r.rect.h);
                    let p = zstd::bulk::decompress(&r.data, bound).unwrap();
                    let px = tether_protocol::palette::decode(&p, r.rect.w, r.rect.h).unwrap();
                    patch(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::Palette => {
                    let px = tether_protocol::palette::decode(&r.data, r.rect.w, r.rect.h).unwrap();
                    patch(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::Indexed | Compression::ZstdIndexed => {
                    let form = if r.compression == Compression::Indexed {
                        r.data.clone()
                    } else {
                        let bound = tether_protocol::indexed::max_encoded_len(r.rect.w, r.rect.h);
                        zstd::bulk::decompress(&r.data, bound).unwrap()
                    };
                    let px = tether_protocol::indexed::decode(
                        &form,
                        r.rect.w,
                        r.rect.h,
                        &mut dec.memory,
                    )
                    .unwrap();
                    patch(fb, w, h, r.rect, &px).unwrap();
                }
                Compression::Zstd | Compression::None => {
                    let px = zstd::bulk::decompress(&r.data, len).unwrap();
                    patch(fb, w, h, r.rect, &px).unwrap();
                }
            }
        }
    }

    /// Distinct "lines" of text, 12 pixels each, `top` the first line shown: scrolling by one
    /// line moves every row up by exactly 12.
    fn lines(w: u32, h: u32, top: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            let line = top + y / 12;
            for x in 0..w {
                let ink = y % 12 < 9 && (x * 5 + line * 11 + y % 12) % 9 < 3;
                let c = if ink { (line * 37 % 200) as u8 } else { 250 };
                v.extend_from_slice(&[c, c, c, 0]);
            }
        }
        v
    }

    fn frame(w: u32, h: u32, seed: u32) -> Vec<u8> {
        // Smooth gradients that move with the seed: video-like, compressible by H.264.
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[
                    ((x + seed * 7) % 256) as u8,
                    ((y + seed * 3) % 256) as u8,
                    ((x + y + seed) % 256) as u8,
                    0,
                ]);
            }
        }
        v
    }

    #[test]
    fn motion_goes_h264_then_a_lossless_refresh_restores_exact_pixels() {
        let (w, h) = (320, 192);
        let mut c = coder(true);
        let mut dec = Viewer::new();
        let mut fb = Vec::new();
        let t0 = Instant::now();
        // First frame: lossless and whole.
        let r = c
            .encode(frame(w, h, 0), w, h, &Damage::Unknown, t0)
            .unwrap();
        assert_eq!(r[0].compression, Compression::Zstd);
        apply(&mut fb, w, h, &r, &mut dec);
        assert_eq!(fb, frame(w, h, 0));
        // Whole-screen motion: H.264, close to the source but not exact.
        for i in 1..5 {
            let r = c
                .encode(
                    frame(w, h, i),
                    w,
                    h,
                    &Damage::Unknown,
                    t0 + Duration::from_millis(u64::from(i) * 30),
                )
                .unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].compression, Compression::H264);
            apply(&mut fb, w, h, &r, &mut dec);
            let src = frame(w, h, i);
            let err: u64 = fb
                .iter()
                .zip(&src)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let mean = err as f64 / (w * h * 3) as f64;
            assert!(mean < 6.0, "mean abs error {mean}");
        }
        // Still, but not for long enough: nothing.
        let t = t0 + Duration::from_millis(150);
        assert!(
            c.encode(frame(w, h, 4), w, h, &Damage::Unknown, t)
                .is_none()
        );
        // Settled: one lossless refresh, then exact again and back to XOR deltas.
        let r = c
            .encode(
                frame(w, h, 4),
                w,
                h,
                &Damage::Unknown,
                t0 + Duration::from_millis(500),
            )
            .unwrap();
        assert_eq!(r[0].compression, Compression::Zstd);
        apply(&mut fb, w, h, &r, &mut dec);
        assert_eq!(fb, frame(w, h, 4));
        let mut small = frame(w, h, 4);
        small[1000] ^= 0xff;
        let r = c
            .encode(
                small.clone(),
                w,
                h,
                &Damage::Unknown,
                t0 + Duration::from_millis(600),
            )
            .unwrap();
        assert!(r.iter().all(|x| x.compression == Compression::ZstdXor));
        apply(&mut fb, w, h, &r, &mut dec);
        assert_eq!(fb, small);
    }

    /// After video, a screen that keeps changing a little (a window dragged on, a caret
    /// blinking) never settles: it turns exact band by band meanwhile, instead of staying on
    /// whole-screen video.
    #[test]
    fn small_changes_after_video_make_the_picture_exact_band_by_band() {
        let (w, h) = (320, 192);
        let mut c = coder(true);
        c.palette = Palettes {
            zstd: true,
            raw: true,
            compact: true,
        };
        let mut dec = Viewer::new();
        let mut fb = Vec::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        apply(
            &mut fb,
            w,
            h,
            &c.encode(frame(w, h, 0), w, h, &Damage::Unknown, at(0))
                .unwrap(),
            &mut dec,
        );
        for i in 1..4 {
            let r = c
                .encode(
                    frame(w, h, i),
                    w,
                    h,
                    &Damage::Unknown,
                    at(u64::from(i) * 30),
                )
                .unwrap();
            assert_eq!(r[0].compression, Compression::H264);
            apply(&mut fb, w, h, &r, &mut dec);
        }
        assert_ne!(fb, frame(w, h, 3), "video is lossy");
        // A small square moves every 30 ms from here on: the screen is never still.
        let moving = |step: u32| {
            let mut px = frame(w, h, 3);
            for y in 20..36 {
                for x in step * 4..step * 4 + 16 {
                    let i = ((y * w + x) * 4) as usize;
                    px[i..i + 4].copy_from_slice(&[0, 0, 255, 0]);
                }
            }
            px
        };
        let mut kinds = Vec::new();
        let mut exact_at = None;
        for step in 0..20u32 {
            let px = moving(step);
            let r = c
                .encode(
                    px.clone(),
                    w,
                    h,
                    &Damage::Unknown,
                    at(90 + u64::from(step + 1) * 30),
                )
                .unwrap();
            kinds.extend(r.iter().map(|x| x.compression));
            apply(&mut fb, w, h, &r, &mut dec);
            if fb == px && exact_at.is_none() {
                exact_at = Some(step);
            }
            if exact_at.is_some() {
                assert_eq!(fb, px, "exact from step {exact_at:?} on, not at {step}");
            }
        }
        // Within 100 ms of the video, still video; then the bands: 192 rows in 3 of 64.
        let exact_at = exact_at.expect("the picture never turned exact while the square moved");
        assert!(
            exact_at <= 3 + 3,
            "exact only at step {exact_at}: {kinds:?}"
        );
        let video = kinds.iter().filter(|k| **k == Compression::H264).count();
        assert!(
            video <= 3,
            "{video} video frames after the motion: {kinds:?}"
        );
    }

    #[test]
    fn without_h264_everything_stays_lossless() {
        let (w, h) = (128, 128);
        let mut c = coder(false);
        let mut dec = Viewer::new();
        let mut fb = Vec::new();
        let t0 = Instant::now();
        for i in 0..4 {
            let r = c
                .encode(frame(w, h, i), w, h, &Damage::Unknown, t0)
                .unwrap();
            assert!(r.iter().all(|x| x.compression != Compression::H264));
            apply(&mut fb, w, h, &r, &mut dec);
            assert_eq!(fb, frame(w, h, i));
        }
    }

    /// A source that reports damage is believed: "nothing changed" skips the comparison, areas
    /// limit it to the tiles they meet, not knowing compares the whole screen.
    #[test]
    fn damage_reported_by_the_source_is_used() {
        let (w, h) = (128, 128);
        let t0 = Instant::now();
        let mut changed = frame(w, h, 0);
        changed[40] ^= 0xff;
        let mut c = coder(false);
        assert!(
            c.encode(frame(w, h, 0), w, h, &Damage::Unknown, t0)
                .is_some()
        );
        let none = Damage::Areas(Vec::new());
        assert!(c.encode(changed.clone(), w, h, &none, t0).is_none());
        let mut c = coder(false);
        c.encode(frame(w, h, 0), w, h, &Damage::Unknown, t0);
        let some = Damage::Areas(vec![Rect {
            x: 0,
            y: 0,
            w: 8,
            h: 8,
        }]);
        let r = c.encode(changed.clone(), w, h, &some, t0).unwrap();
        assert!(r.iter().all(|x| x.compression == Compression::ZstdXor));
        // A change the damage does not cover is not looked for (the source's word is taken).
        let mut c = coder(false);
        c.encode(frame(w, h, 0), w, h, &Damage::Unknown, t0);
        let elsewhere = Damage::Areas(vec![Rect {
            x: 100,
            y: 100,
            w: 8,
            h: 8,
        }]);
        assert!(c.encode(changed, w, h, &elsewhere, t0).is_none());
    }

    /// A scroll goes to a viewer that takes copies as one copy and the strip that came into
    /// view, far fewer bytes than the tiles, and the picture is exact.
    #[test]
    fn a_scroll_is_a_copy_and_a_strip_for_viewers_that_take_copies() {
        let (w, h) = (320, 240);
        let text = |top| lines(w, h, top);
        let t0 = Instant::now();
        let mut dec = Viewer::new();
        let mut sizes = Vec::new();
        for copies in [false, true] {
            let mut c = coder(false);
            c.copy_rect = copies;
            let mut fb = Vec::new();
            apply(
                &mut fb,
                w,
                h,
                &c.encode(text(0), w, h, &Damage::Unknown, t0).unwrap(),
                &mut dec,
            );
            let mut bytes = 0;
            let mut kinds = Vec::new();
            for top in 1..6 {
                let r = c.encode(text(top), w, h, &Damage::Unknown, t0).unwrap();
                bytes += r.iter().map(|x| x.data.len()).sum::<usize>();
                kinds.extend(r.iter().map(|x| x.compression));
                apply(&mut fb, w, h, &r, &mut dec);
                assert_eq!(fb, text(top), "copies {copies}, line {top}");
            }
            assert_eq!(kinds.contains(&Compression::CopyRect), copies);
            sizes.push(bytes);
        }
        assert!(
            sizes[1] * 4 < sizes[0],
            "copies {} vs tiles {} bytes",
            sizes[1],
            sizes[0]
        );
    }

    /// The copy a partial capture starts from is the last frame exactly, whether it comes from
    /// the frame before brought up to date in the damaged areas or from a whole copy.
    #[test]
    fn the_copy_to_capture_into_equals_the_last_frame() {
        let (w, h) = (64, 48);
        let mut c = coder(false);
        assert!(c.copy_of_last().is_none());
        let t0 = Instant::now();
        let mut px = frame(w, h, 0);
        c.encode(px.clone(), w, h, &Damage::Unknown, t0);
        assert_eq!(c.copy_of_last().unwrap(), px);
        for (i, r) in [
            (1u8, (3u32, 4u32, 5u32, 6u32)),
            (2, (40, 30, 20, 10)),
            (3, (0, 0, 1, 1)),
        ] {
            let (x, y, rw, rh) = r;
            for yy in y..y + rh {
                for xx in x..x + rw {
                    px[((yy * w + xx) * 4) as usize] = i;
                }
            }
            let area = Damage::Areas(vec![Rect { x, y, w: rw, h: rh }]);
            c.encode(px.clone(), w, h, &area, t0);
            assert_eq!(c.copy_of_last().unwrap(), px, "after change {i}");
        }
    }

    /// Typing: each key is one small rectangle of two colours. A viewer that takes the palette
    /// form as it is gets it where zstd's own frame would cost more, and its picture is exact;
    /// others never get it.
    #[test]
    fn the_smallest_rectangles_go_as_bare_palettes_to_viewers_that_take_them() {
        let (w, h) = (200, 40);
        // A white line on which black "characters" appear one at a time, 6 × 13 each.
        let typed = |n: u32| {
            let mut v = vec![255u8; (w * h * 4) as usize];
            for c in 0..n {
                for y in 10..23 {
                    for x in c * 6..c * 6 + 5 {
                        if (x + y * 3 + c) % 4 < 2 {
                            let i = ((y * w + x) * 4) as usize;
                            v[i..i + 4].copy_from_slice(&[0, 0, 0, 0]);
                        }
                    }
                }
            }
            v
        };
        let t0 = Instant::now();
        let mut sizes = Vec::new();
        for (raw, compact) in [(false, false), (true, false), (true, true)] {
            let mut dec = Viewer::new();
            let mut c = coder(false);
            c.palette = Palettes {
                zstd: true,
                raw,
                compact,
            };
            let mut fb = Vec::new();
            apply(
                &mut fb,
                w,
                h,
                &c.encode(typed(0), w, h, &Damage::Unknown, t0).unwrap(),
                &mut dec,
            );
            let (mut bytes, mut bare, mut indexed) = (0, 0, 0);
            for n in 1..20 {
                let r = c.encode(typed(n), w, h, &Damage::Unknown, t0).unwrap();
                bytes += r.iter().map(|x| x.data.len()).sum::<usize>();
                bare += r
                    .iter()
                    .filter(|x| x.compression == Compression::Palette)
                    .count();
                indexed += r
                    .iter()
                    .filter(|x| x.compression == Compression::Indexed)
                    .count();
                apply(&mut fb, w, h, &r, &mut dec);
                assert_eq!(fb, typed(n), "raw {raw}, compact {compact}, key {n}");
            }
            assert_eq!(bare > 0, raw && !compact, "{bare} bare palettes");
            assert_eq!(indexed > 0, compact, "{indexed} indexed");
            sizes.push(bytes);
        }
        // The packed form names the last palette instead of repeating it: a quarter less.
        assert!(
            sizes[2] * 4 < sizes[1] * 3,
            "indexed {} vs bare {} bytes",
            sizes[2],
            sizes[1]
        );
        assert!(
            sizes[1] < sizes[0],
            "bare {} vs zstd {} bytes",
            sizes[1],
            sizes[0]
        );
    }

    /// A desktop with a checkered background and a window of text at `at` (120 × 96).
    fn desktop(w: u32, h: u32, at: (i32, i32)) -> Vec<u8> {
        let text = lines(120, 96, 3);
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let (wx, wy) = (x - at.0, y - at.1);
                if (0..120).contains(&wx) && (0..96).contains(&wy) {
                    let i = (wy * 120 + wx) as usize * 4;
                    v.extend_from_slice(&text[i..i + 4]);
                } else {
                    let c = if (x / 4 + y / 4) % 2 == 0 { 60 } else { 90 };
                    v.extend_from_slice(&[c, c + 10, c + 20, 0]);
                }
            }
        }
        v
    }

    /// A dragged window goes to a viewer that takes copies across as one copy and the strips it
    /// uncovered, far fewer bytes than the tiles, and the picture is exact; also when the
    /// platform reports the move one frame late. Others never get a copy across.
    #[test]
    fn a_moved_window_is_a_copy_across_for_viewers_that_take_them() {
        let (w, h) = (320, 240);
        let t0 = Instant::now();
        let mut dec = Viewer::new();
        let mut sizes = Vec::new();
        for (moves, late) in [(false, false), (true, false), (true, true)] {
            let mut c = coder(false);
            c.copy_rect = true;
            c.move_rect = moves;
            let mut fb = Vec::new();
            let first = c.encode(desktop(w, h, (10, 20)), w, h, &Damage::Unknown, t0);
            apply(&mut fb, w, h, &first.unwrap(), &mut dec);
            let (mut bytes, mut across) = (0, 0);
            let mut at = (10, 20);
            for step in 1..8 {
                let to = (10 + step * 13, 20 + step * 7);
                let hint = WindowMove {
                    from: at,
                    to,
                    size: (120, 96),
                };
                if late {
                    // Seen just after a capture that does not show it yet (and offered again).
                    c.moves = vec![hint];
                    let still = c.encode(desktop(w, h, at), w, h, &Damage::Unknown, t0);
                    assert!(still.is_none());
                }
                // With a wrong guess beside it, as the platform offers several.
                let wrong = WindowMove {
                    from: (at.0 + 3, at.1),
                    ..hint
                };
                c.moves = vec![wrong, hint];
                let r = c
                    .encode(desktop(w, h, to), w, h, &Damage::Unknown, t0)
                    .unwrap();
                bytes += r.iter().map(|x| x.data.len()).sum::<usize>();
                across += r
                    .iter()
                    .filter(|x| x.compression == Compression::CopyRect && x.data.len() == 8)
                    .count();
                apply(&mut fb, w, h, &r, &mut dec);
                assert_eq!(
                    fb,
                    desktop(w, h, to),
                    "moves {moves}, late {late}, step {step}"
                );
                at = to;
            }
            match (moves, late) {
                (false, _) => assert_eq!(across, 0),
                (true, _) => assert_eq!(across, 7),
            }
            sizes.push(bytes);
        }
        // The strips a move uncovers (a busy checkered background here) still go as pixels.
        assert!(
            sizes[1] * 2 < sizes[0],
            "copies {} vs tiles {}",
            sizes[1],
            sizes[0]
        );
    }

    /// A scroll that starts while the viewer holds a lossy (H.264) picture: one exact picture,
    /// then copies, instead of video for as long as the scroll lasts.
    #[test]
    fn a_scroll_during_video_turns_into_copies_after_one_exact_picture() {
        let (w, h) = (320, 240);
        let text = |top| lines(w, h, top);
        let t0 = Instant::now();
        let mut dec = Viewer::new();
        let mut c = coder(true);
        c.copy_rect = true;
        let mut fb = Vec::new();
        let mut step = |c: &mut Coder, px: Vec<u8>| {
            let r = c.encode(px, w, h, &Damage::Unknown, t0).unwrap();
            apply(&mut fb, w, h, &r, &mut dec);
            r.iter().map(|x| x.compression).collect::<Vec<_>>()
        };
        step(&mut c, text(0));
        // Motion: video, and the viewer's picture is lossy from here.
        assert_eq!(step(&mut c, frame(w, h, 1)), vec![Compression::H264]);
        assert_eq!(step(&mut c, text(0)), vec![Compression::H264]);
        // The scroll starts: one exact picture, then copies.
        assert_eq!(step(&mut c, text(1)), vec![Compression::Zstd]);
        let kinds = step(&mut c, text(2));
        assert_eq!(kinds[0], Compression::CopyRect, "{kinds:?}");
        assert_eq!(fb, text(2));
    }

    /// Text-like content: few colours. With a viewer that takes palette rectangles they are
    /// used where smaller, and the viewer's picture is exact either way.
    #[test]
    fn palette_rectangles_go_to_viewers_that_take_them_and_decode_exactly() {
        let (w, h) = (256, 128);
        // A white page with black-and-grey "glyphs" that change from frame to frame.
        let page = |seed: u32| {
            let mut v = Vec::with_capacity((w * h * 4) as usize);
            for y in 0..h {
                for x in 0..w {
                    let ink = (x / 3 + y / 5 + seed).is_multiple_of(7) && y % 16 > 3;
                    let shade = if ink {
                        ((x + seed) % 3 * 60) as u8
                    } else {
                        255
                    };
                    v.extend_from_slice(&[shade, shade, shade, 0]);
                }
            }
            v
        };
        let t0 = Instant::now();
        let (mut sizes, mut kinds) = (Vec::new(), Vec::new());
        for (palette, compact) in [(false, false), (true, false), (true, true)] {
            let mut dec = Viewer::new();
            let mut c = coder(false);
            c.palette = Palettes {
                zstd: palette,
                raw: false,
                compact,
            };
            let mut fb = Vec::new();
            let mut bytes = 0;
            for i in 0..4 {
                let r = c.encode(page(i), w, h, &Damage::Unknown, t0).unwrap();
                bytes += r.iter().map(|x| x.data.len()).sum::<usize>();
                kinds.extend(r.iter().map(|x| (palette, compact, x.compression)));
                apply(&mut fb, w, h, &r, &mut dec);
                assert_eq!(
                    fb,
                    page(i),
                    "palette {palette}, compact {compact}, frame {i}"
                );
            }
            sizes.push(bytes);
        }
        let new = [
            Compression::Indexed,
            Compression::ZstdIndexed,
            Compression::ZstdPlanes,
            Compression::ZstdXorPlanes,
        ];
        assert!(!kinds.contains(&(false, false, Compression::ZstdPalette)));
        assert!(kinds.contains(&(true, false, Compression::ZstdPalette)));
        assert!(!kinds.iter().any(|(_, _, k)| *k == Compression::Palette));
        assert!(
            kinds
                .iter()
                .all(|(_, compact, k)| *compact || !new.contains(k))
        );
        assert!(
            kinds
                .iter()
                .any(|(_, compact, k)| *compact && new.contains(k))
        );
        assert!(
            sizes[2] < sizes[1] && sizes[1] < sizes[0],
            "compact {}, palette {}, neither {} bytes",
            sizes[2],
            sizes[1],
            sizes[0]
        );
        assert!(
            sizes[1] < sizes[0],
            "palette {} vs {} bytes",
            sizes[1],
            sizes[0]
        );
    }

    /// "Nothing changed" from the source needs no capture: nothing is sent while the viewer
    /// holds the screen exactly, and the lossless refresh once a lossy frame settled.
    #[test]
    fn an_unchanged_screen_is_answered_without_capturing() {
        let (w, h) = (64, 32);
        let t0 = Instant::now();
        let mut c = coder(false);
        assert!(c.unchanged(t0).is_none(), "no frame yet: capture");
        c.encode(frame(w, h, 0), w, h, &Damage::Unknown, t0);
        assert_eq!(
            c.unchanged(t0).map(|(w, h, r)| (w, h, r.is_none())),
            Some((64, 32, true))
        );
        c.viewer_exact = false;
        assert!(
            matches!(c.unchanged(t0), Some((_, _, None))),
            "still settling"
        );
        let (_, _, refresh) = c.unchanged(t0 + SETTLE * 2).unwrap();
        let refresh = refresh.expect("the lossless refresh");
        assert_eq!(refresh[0].compression, Compression::Zstd);
        assert!(c.viewer_exact);
    }
}
