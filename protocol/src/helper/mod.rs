//! The agent ↔ desktop helper protocol: how the agent (a system service) asks `tether-wayland`,
//! the helper it starts inside the user's Wayland session as that user, for screens, frames,
//! input and the clipboard.
//!
//! The helper speaks on its standard input and output, so nothing of it is reachable by another
//! local user (a pipe has no name). Requests and replies alternate strictly: the agent sends one
//! [`ToHelper`], the helper answers one [`FromHelper`]. A [`FromHelper::Frame`] is followed on the
//! pipe by exactly `width × height × 4` raw bytes of BGRX pixels, so frames do not pass through
//! the message decoder's container limit.
//!
//! The helper runs as the desktop user, who may replace it or drive it (ptrace) at will, so the
//! agent treats every reply as untrusted: [`FrameHeader::check`] bounds the size before any
//! allocation and clips damage to the frame.
//!
//! The helper's loop ([`serve`]) and what a platform gives it ([`backend::Backend`]) live here
//! too, over any byte stream the caller owns (`std::io::Read`/`Write`: the pipe, or a buffer in
//! tests), as rustls' `read_tls`/`write_tls` do: the Wayland helper (`tether-wayland`) and the
//! Windows agent's desktop helper (`tether-agent desktop-helper`, started in the user's session)
//! serve the same protocol.

pub mod backend;
pub mod serve;

use crate::keys::KeyEvent;
use crate::session::{DisplayInfo, InputEvent};
use crate::tiles::Rect;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of this protocol; the helper says it first and the agent refuses any other.
pub const HELPER_VERSION: u16 = 1;
/// Limit on one message's payload (a frame's pixels travel after it, bounded apart).
pub const MESSAGE_LIMIT: usize = 256 * 1024;
/// Widest or tallest display a helper may report (pixels).
pub const MAX_SIDE: u32 = 16_384;
/// Most pixel bytes one frame may carry: 128 MiB (an 8K display is 127 MiB).
pub const MAX_FRAME_BYTES: u64 = 128 * 1024 * 1024;
/// Most damage rectangles one frame may carry (more are replaced by the whole frame).
pub const MAX_DAMAGE_RECTS: usize = 1024;
/// Most bytes of clipboard text either way.
pub const MAX_CLIPBOARD: usize = 128 * 1024;
/// The pointer image's largest side.
pub const MAX_POINTER_SIDE: u16 = 256;

/// Agent → helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToHelper {
    /// The displays (monitors), the first being the primary. Starts no screen sharing.
    Displays,
    /// The newest frame of a display. The first capture of a display starts sharing it.
    Capture {
        display: u32,
    },
    /// Stop sharing every display (the stream ended); the next capture starts again.
    StopCapture,
    Input(InputEvent),
    /// Where the pointer is and, when it changed, its image.
    Pointer,
    GetClipboard,
    SetClipboard(String),
}

/// Helper → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromHelper {
    /// The helper's first message, before any request.
    Hello {
        version: u16,
        /// Which backend serves this session: "gnome", "wlroots", "portal".
        backend: String,
        /// The compositor's own name where known (e.g. "mutter 43.8", "sway").
        compositor: String,
    },
    Displays(Vec<DisplayInfo>),
    /// A frame follows: `width × height × 4` bytes of BGRX.
    Frame(FrameHeader),
    /// Nothing changed on the display since the last frame sent for it.
    Unchanged,
    Pointer(Option<PointerState>),
    Clipboard(String),
    Done,
    /// The request failed; the helper goes on serving.
    Error(HelperError),
}

/// What failed in the helper, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum HelperError {
    #[error("display {0} does not exist")]
    NoSuchDisplay(u32),
    #[error("the compositor refused to share the screen: {0}")]
    ScreenRefused(String),
    #[error("screen capture failed: {0}")]
    Capture(String),
    #[error("input failed: {0}")]
    Input(String),
    #[error("clipboard: {0}")]
    Clipboard(String),
    #[error("not supported on this desktop: {0}")]
    Unsupported(String),
}

/// The header of a frame; its pixels follow on the pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameHeader {
    pub width: u32,
    pub height: u32,
    /// Where the frame may differ from the previous one sent for this display; `None`: unknown
    /// (compare everything).
    pub damage: Option<Vec<Rect>>,
}

/// Why a frame header is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameCheckError {
    #[error("the helper sent an empty or oversized frame ({0}×{1})")]
    Size(u32, u32),
}

impl FrameHeader {
    /// The number of pixel bytes that follow, once the size is within bounds; damage is clipped
    /// to the frame, empty rectangles dropped, and too many replaced by "unknown".
    pub fn check(&mut self) -> Result<usize, FrameCheckError> {
        let (w, h) = (self.width, self.height);
        let bytes = u64::from(w) * u64::from(h) * 4;
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || bytes > MAX_FRAME_BYTES {
            return Err(FrameCheckError::Size(w, h));
        }
        if let Some(rects) = &mut self.damage {
            if rects.len() > MAX_DAMAGE_RECTS {
                self.damage = None;
            } else {
                *rects = rects.iter().filter_map(|r| clip(*r, w, h)).collect();
            }
        }
        usize::try_from(bytes).map_err(|_| FrameCheckError::Size(w, h))
    }
}

/// `r` within a `w × h` frame, or `None` when nothing of it is inside.
pub fn clip(r: Rect, w: u32, h: u32) -> Option<Rect> {
    let x0 = r.x.min(w);
    let y0 = r.y.min(h);
    let x1 = r.x.saturating_add(r.w).min(w);
    let y1 = r.y.saturating_add(r.h).min(h);
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
}

/// The pointer as the compositor reports it (metadata, not drawn into the frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerState {
    pub x: i32,
    pub y: i32,
    /// The image when it changed: premultiplied RGBA.
    pub image: Option<PointerBitmap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerBitmap {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    pub rgba: Vec<u8>,
}

impl PointerBitmap {
    /// Whether the size is within bounds and matches the bytes.
    pub fn is_valid(&self) -> bool {
        self.width <= MAX_POINTER_SIDE
            && self.height <= MAX_POINTER_SIDE
            && self.rgba.len() == usize::from(self.width) * usize::from(self.height) * 4
            && self.hot_x <= self.width
            && self.hot_y <= self.height
    }
}

/// The key events an [`InputEvent`] of the older key model stands for, in order: named keys of
/// `tether key`, the toolbar's combos (all down, then up in reverse), text (each character
/// down and up). Pointer events and [`InputEvent::ReleaseKeys`] give none.
pub fn key_events(event: &InputEvent) -> Vec<KeyEvent> {
    use crate::keys::{KeyMode, keysym_for_char};
    let ev = |keysym, down| KeyEvent {
        keysym,
        code: 0,
        down,
        mode: KeyMode::Translate,
    };
    match event {
        InputEvent::Key { key, down } => {
            key.keysym().map(|k| vec![ev(k, *down)]).unwrap_or_default()
        }
        InputEvent::Combo(keys) => {
            let syms: Vec<u32> = keys.iter().filter_map(|k| k.keysym()).collect();
            syms.iter()
                .map(|&s| ev(s, true))
                .chain(syms.iter().rev().map(|&s| ev(s, false)))
                .collect()
        }
        InputEvent::Text(t) => t
            .chars()
            .flat_map(|c| {
                let k = keysym_for_char(c);
                [ev(k, true), ev(k, false)]
            })
            .collect(),
        InputEvent::KeyEvent(k) => vec![*k],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sym;
    use crate::session::Key;

    #[test]
    fn frames_are_bounded_before_any_allocation_and_damage_is_clipped() {
        let mut h = FrameHeader {
            width: 100,
            height: 50,
            damage: Some(vec![
                Rect {
                    x: 90,
                    y: 40,
                    w: 20,
                    h: 20,
                },
                Rect {
                    x: 200,
                    y: 0,
                    w: 5,
                    h: 5,
                },
                Rect {
                    x: u32::MAX,
                    y: u32::MAX,
                    w: u32::MAX,
                    h: 1,
                },
            ]),
        };
        assert_eq!(h.check(), Ok(100 * 50 * 4));
        assert_eq!(
            h.damage,
            Some(vec![Rect {
                x: 90,
                y: 40,
                w: 10,
                h: 10
            }])
        );
        for (w, hh) in [(0, 10), (10, 0), (MAX_SIDE + 1, 1), (MAX_SIDE, MAX_SIDE)] {
            let mut f = FrameHeader {
                width: w,
                height: hh,
                damage: None,
            };
            assert_eq!(f.check(), Err(FrameCheckError::Size(w, hh)), "{w}×{hh}");
        }
        let mut many = FrameHeader {
            width: 10,
            height: 10,
            damage: Some(vec![
                Rect {
                    x: 0,
                    y: 0,
                    w: 1,
                    h: 1
                };
                MAX_DAMAGE_RECTS + 1
            ]),
        };
        assert!(many.check().is_ok());
        assert_eq!(many.damage, None, "too many rectangles: compare everything");
    }

    #[test]
    fn pointer_bitmaps_must_match_their_size() {
        let ok = PointerBitmap {
            width: 2,
            height: 2,
            hot_x: 1,
            hot_y: 1,
            rgba: vec![0; 16],
        };
        assert!(ok.is_valid());
        assert!(
            !PointerBitmap {
                rgba: vec![0; 15],
                ..ok.clone()
            }
            .is_valid()
        );
        assert!(
            !PointerBitmap {
                hot_x: 3,
                ..ok.clone()
            }
            .is_valid()
        );
        assert!(
            !PointerBitmap {
                width: 257,
                height: 1,
                hot_x: 0,
                hot_y: 0,
                rgba: vec![0; 257 * 4]
            }
            .is_valid()
        );
    }

    #[test]
    fn older_key_model_events_become_key_events() {
        let keys = key_events(&InputEvent::Combo(vec![
            Key::Control,
            Key::Alt,
            Key::Delete,
        ]));
        let seq: Vec<(u32, bool)> = keys.iter().map(|k| (k.keysym, k.down)).collect();
        assert_eq!(
            seq,
            vec![
                (sym::CONTROL_L, true),
                (sym::ALT_L, true),
                (sym::DELETE, true),
                (sym::DELETE, false),
                (sym::ALT_L, false),
                (sym::CONTROL_L, false),
            ]
        );
        let text = key_events(&InputEvent::Text("A€".into()));
        let seq: Vec<(u32, bool)> = text.iter().map(|k| (k.keysym, k.down)).collect();
        assert_eq!(
            seq,
            vec![
                (0x41, true),
                (0x41, false),
                (0x0100_20ac, true),
                (0x0100_20ac, false)
            ]
        );
        assert!(key_events(&InputEvent::MouseMove { x: 1, y: 2 }).is_empty());
    }
}
