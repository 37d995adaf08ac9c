//! Change detection and updates for streamed screens: the screen is cut into square tiles,
//! only tiles that differ from the previous frame are sent, and the viewer patches them into its
//! copy. Pixels are packed BGRX rows (4 bytes per pixel).
//!
//! [`FlowControl`] keeps a bounded number of frames in flight: when the viewer falls behind the
//! agent stops capturing, and when credit returns it sends the newest screen, so on a slow link
//! latency stays flat instead of growing with a queue.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const TILE: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Rectangles (runs of changed tiles within a tile row) where `cur` differs from `prev`.
/// With no previous frame (or a size change) the whole screen is one rectangle.
pub fn changed_rects(prev: Option<&[u8]>, cur: &[u8], width: u32, height: u32) -> Vec<Rect> {
    changed_tiles(prev, cur, width, height, |_| true)
}

/// [`changed_rects`] looking only at the tiles that meet one of `areas` (where the platform says
/// the screen was drawn to): the rest of the screen is not read at all.
pub fn changed_rects_within(
    prev: Option<&[u8]>,
    cur: &[u8],
    width: u32,
    height: u32,
    areas: &[Rect],
) -> Vec<Rect> {
    changed_tiles(prev, cur, width, height, |t| {
        areas.iter().any(|a| a.intersects(&t))
    })
}

impl Rect {
    /// Whether the two share at least one pixel.
    pub fn intersects(&self, o: &Rect) -> bool {
        self.w > 0
            && self.h > 0
            && o.w > 0
            && o.h > 0
            && u64::from(self.x) < u64::from(o.x) + u64::from(o.w)
            && u64::from(o.x) < u64::from(self.x) + u64::from(self.w)
            && u64::from(self.y) < u64::from(o.y) + u64::from(o.h)
            && u64::from(o.y) < u64::from(self.y) + u64::from(self.h)
    }
}

fn changed_tiles(
    prev: Option<&[u8]>,
    cur: &[u8],
    width: u32,
    height: u32,
    look: impl Fn(Rect) -> bool,
) -> Vec<Rect> {
    let full = Rect {
        x: 0,
        y: 0,
        w: width,
        h: height,
    };
    let stride = width as usize * 4;
    let Some(prev) = prev.filter(|p| p.len() == cur.len() && cur.len() == stride * height as usize)
    else {
        return if width == 0 || height == 0 {
            vec![]
        } else {
            vec![full]
        };
    };
    let mut out = Vec::new();
    let mut ty = 0;
    while ty < height {
        let th = TILE.min(height - ty);
        let mut run: Option<Rect> = None;
        let mut tx = 0;
        while tx < width {
            let tw = TILE.min(width - tx);
            let tile = Rect {
                x: tx,
                y: ty,
                w: tw,
                h: th,
            };
            let dirty = look(tile)
                && (ty..ty + th).any(|y| {
                    let start = y as usize * stride + tx as usize * 4;
                    let end = start + tw as usize * 4;
                    prev[start..end] != cur[start..end]
                });
            match (&mut run, dirty) {
                (Some(r), true) => r.w += tw,
                (None, true) => {
                    run = Some(Rect {
                        x: tx,
                        y: ty,
                        w: tw,
                        h: th,
                    })
                }
                (Some(_), false) => out.extend(run.take()),
                (None, false) => {}
            }
            tx += tw;
        }
        out.extend(run);
        ty += th;
    }
    out
}

/// `r` shrunk to the bounding box of the pixels where `cur` differs from `prev` (`r` itself if
/// none differ or the frames do not fit). A typed character changes a glyph cell, not the 64×64
/// tile around it; sending just the cell saves the bytes the tile's unchanged rows would cost.
pub fn tighten(prev: &[u8], cur: &[u8], width: u32, r: Rect) -> Rect {
    let stride = width as usize * 4;
    let fits = |f: &[u8]| {
        r.x.checked_add(r.w).is_some_and(|x| x <= width)
            && f.len() >= (r.y as usize + r.h as usize) * stride
    };
    if !fits(prev) || !fits(cur) {
        return r;
    }
    let (mut top, mut bottom, mut left, mut right) = (u32::MAX, 0, u32::MAX, 0);
    for y in r.y..r.y + r.h {
        let span =
            y as usize * stride + r.x as usize * 4..y as usize * stride + (r.x + r.w) as usize * 4;
        let (a, b) = (&prev[span.clone()], &cur[span]);
        if a == b {
            continue;
        }
        let differs = |(p, q): (&[u8], &[u8])| p != q;
        let pairs = || a.chunks_exact(4).zip(b.chunks_exact(4));
        let (Some(first), Some(last)) = (pairs().position(differs), pairs().rposition(differs))
        else {
            continue;
        };
        top = top.min(y);
        bottom = y;
        left = left.min(r.x + first as u32);
        right = right.max(r.x + last as u32);
    }
    if top == u32::MAX {
        return r;
    }
    Rect {
        x: left,
        y: top,
        w: right - left + 1,
        h: bottom - top + 1,
    }
}

/// The pixels of `r`, rows packed.
pub fn extract(frame: &[u8], width: u32, r: Rect) -> Vec<u8> {
    let stride = width as usize * 4;
    let mut out = Vec::with_capacity(r.w as usize * r.h as usize * 4);
    for y in r.y..r.y + r.h {
        let start = y as usize * stride + r.x as usize * 4;
        if let Some(row) = frame.get(start..start + r.w as usize * 4) {
            out.extend_from_slice(row);
        }
    }
    out
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("update rectangle {0:?} lies outside the {1}x{2} screen")]
    OutOfBounds(Rect, u32, u32),
    #[error("update rectangle has {got} bytes of pixels, {want} expected")]
    WrongSize { got: usize, want: usize },
}

/// Writes `pixels` (rows of `r`) into `frame`. Checks everything: updates come from the network.
pub fn patch(
    frame: &mut [u8],
    width: u32,
    height: u32,
    r: Rect,
    pixels: &[u8],
) -> Result<(), PatchError> {
    let fits = r.x.checked_add(r.w).is_some_and(|e| e <= width)
        && r.y.checked_add(r.h).is_some_and(|e| e <= height)
        && frame.len() == width as usize * height as usize * 4;
    if !fits {
        return Err(PatchError::OutOfBounds(r, width, height));
    }
    let row = r.w as usize * 4;
    let want = row * r.h as usize;
    if pixels.len() != want {
        return Err(PatchError::WrongSize {
            got: pixels.len(),
            want,
        });
    }
    let stride = width as usize * 4;
    for (i, src) in pixels
        .chunks_exact(row.max(1))
        .enumerate()
        .take(r.h as usize)
    {
        let start = (r.y as usize + i) * stride + r.x as usize * 4;
        frame[start..start + row].copy_from_slice(src);
    }
    Ok(())
}

/// XORs `pixels` (rows of `r`) into `frame`: applies a [`xor`] delta.
pub fn patch_xor(
    frame: &mut [u8],
    width: u32,
    height: u32,
    r: Rect,
    delta: &[u8],
) -> Result<(), PatchError> {
    // Same checks as a plain patch.
    let current = extract(frame, width, r);
    if current.len() != delta.len() {
        return Err(
            if r.x.checked_add(r.w).is_some_and(|e| e <= width)
                && r.y.checked_add(r.h).is_some_and(|e| e <= height)
            {
                PatchError::WrongSize {
                    got: delta.len(),
                    want: current.len(),
                }
            } else {
                PatchError::OutOfBounds(r, width, height)
            },
        );
    }
    let merged: Vec<u8> = current.iter().zip(delta).map(|(a, b)| a ^ b).collect();
    patch(frame, width, height, r, &merged)
}

/// `a` XOR `b`, byte by byte (equal lengths).
pub fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Frames in flight between agent and viewer.
#[derive(Debug, Clone)]
pub struct FlowControl {
    max_in_flight: u32,
    next_seq: u64,
    /// Highest sequence number acknowledged.
    acked: u64,
}

impl FlowControl {
    pub fn new(max_in_flight: u32) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            next_seq: 1,
            acked: 0,
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.next_seq - 1 - self.acked
    }

    /// May another frame be sent now?
    pub fn can_send(&self) -> bool {
        self.in_flight() < u64::from(self.max_in_flight)
    }

    /// Takes the sequence number for a frame about to be sent.
    pub fn on_send(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Acknowledgements are cumulative; stale or impossible ones are ignored.
    pub fn on_ack(&mut self, seq: u64) {
        if seq < self.next_seq && seq > self.acked {
            self.acked = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, fill: u8) -> Vec<u8> {
        vec![fill; (w * h * 4) as usize]
    }

    #[test]
    fn only_tiles_meeting_the_damage_are_compared() {
        let (w, h) = (200, 130);
        let a = frame(w, h, 0);
        let mut b = a.clone();
        let px = |x: u32, y: u32| ((y * w + x) * 4) as usize;
        b[px(70, 10)] = 9;
        b[px(199, 129)] = 9;
        let near = |x, y| Rect { x, y, w: 3, h: 2 };
        // Damage over both changes: the same as comparing everything.
        assert_eq!(
            changed_rects_within(Some(&a), &b, w, h, &[near(69, 9), near(198, 128)]),
            changed_rects(Some(&a), &b, w, h)
        );
        // Damage over one: the other is not looked at.
        assert_eq!(
            changed_rects_within(Some(&a), &b, w, h, &[near(69, 9)]),
            vec![Rect {
                x: 64,
                y: 0,
                w: 64,
                h: 64
            }]
        );
        // Damage that touches a tile's last column counts; one just beside it does not.
        assert_eq!(
            changed_rects_within(Some(&a), &b, w, h, &[near(125, 0)]).len(),
            1
        );
        assert!(changed_rects_within(Some(&a), &b, w, h, &[near(128, 0)]).is_empty());
        // Damage where nothing differs (drawn with the same colour): nothing to send.
        assert!(changed_rects_within(Some(&a), &a, w, h, &[near(69, 9)]).is_empty());
        // No previous frame: the whole screen, whatever the damage.
        assert_eq!(
            changed_rects_within(None, &b, w, h, &[]),
            vec![Rect { x: 0, y: 0, w, h }]
        );
    }

    #[test]
    fn rects_intersect_only_when_they_share_a_pixel() {
        let r = Rect {
            x: 10,
            y: 10,
            w: 10,
            h: 10,
        };
        let at = |x, y| Rect { x, y, w: 1, h: 1 };
        assert!(r.intersects(&at(10, 10)) && r.intersects(&at(19, 19)));
        assert!(!r.intersects(&at(20, 10)) && !r.intersects(&at(10, 20)));
        assert!(!r.intersects(&at(9, 9)));
        let huge = Rect {
            x: u32::MAX - 1,
            y: 0,
            w: u32::MAX,
            h: 1,
        };
        assert!(!r.intersects(&huge) && !huge.intersects(&r));
        assert!(!r.intersects(&Rect {
            x: 12,
            y: 12,
            w: 0,
            h: 5
        }));
    }

    #[test]
    fn first_frame_is_whole_screen_then_only_changes() {
        let (w, h) = (200, 130);
        let a = frame(w, h, 0);
        assert_eq!(
            changed_rects(None, &a, w, h),
            vec![Rect { x: 0, y: 0, w, h }]
        );
        assert!(changed_rects(Some(&a), &a, w, h).is_empty());
        let mut b = a.clone();
        // One pixel at (70, 10) and one at (199, 129): tile (1,0) and the last, partial tile.
        let px = |x: u32, y: u32| ((y * w + x) * 4) as usize;
        b[px(70, 10)] = 9;
        b[px(199, 129)] = 9;
        assert_eq!(
            changed_rects(Some(&a), &b, w, h),
            vec![
                Rect {
                    x: 64,
                    y: 0,
                    w: 64,
                    h: 64
                },
                Rect {
                    x: 192,
                    y: 128,
                    w: 8,
                    h: 2
                },
            ]
        );
        // Adjacent dirty tiles in a row merge.
        b[px(130, 10)] = 9;
        assert_eq!(
            changed_rects(Some(&a), &b, w, h)[0],
            Rect {
                x: 64,
                y: 0,
                w: 128,
                h: 64
            }
        );
    }

    #[test]
    fn tighten_shrinks_to_the_changed_pixels() {
        let (w, h) = (200u32, 100u32);
        let prev = frame(w, h, 0);
        let mut cur = prev.clone();
        // A "glyph": pixels (70..77, 20..33) change.
        for y in 20..33 {
            for x in 70..77 {
                cur[(y * w as usize + x) * 4] = 0xff;
            }
        }
        let rects = changed_rects(Some(&prev), &cur, w, h);
        assert_eq!(rects.len(), 1);
        let t = tighten(&prev, &cur, w, rects[0]);
        assert_eq!(
            t,
            Rect {
                x: 70,
                y: 20,
                w: 7,
                h: 13
            }
        );
        // Patching only the tight rectangle reproduces the new frame.
        let mut fb = prev.clone();
        patch_xor(
            &mut fb,
            w,
            h,
            t,
            &xor(&extract(&cur, w, t), &extract(&prev, w, t)),
        )
        .unwrap();
        assert_eq!(fb, cur);
        // Nothing changed, or a rectangle outside the frame: left as it is.
        let r = Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 64,
        };
        assert_eq!(tighten(&prev, &prev, w, r), r);
        let outside = Rect {
            x: 190,
            y: 0,
            w: 64,
            h: 64,
        };
        assert_eq!(tighten(&prev, &cur, w, outside), outside);
    }

    #[test]
    fn extract_and_patch_roundtrip() {
        let (w, h) = (100, 70);
        let mut src = frame(w, h, 0);
        for (i, b) in src.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let mut dst = frame(w, h, 0);
        for r in changed_rects(Some(&dst.clone()), &src, w, h) {
            patch(&mut dst, w, h, r, &extract(&src, w, r)).unwrap();
        }
        assert_eq!(dst, src);
    }

    #[test]
    fn xor_deltas_reproduce_the_new_frame() {
        let (w, h) = (70, 70);
        let old: Vec<u8> = (0..w * h * 4).map(|i| (i % 7) as u8).collect();
        let mut new = old.clone();
        new[4 * 75] = 200;
        let mut viewer = old.clone();
        for r in changed_rects(Some(&old), &new, w, h) {
            let delta = xor(&extract(&new, w, r), &extract(&old, w, r));
            assert!(delta.iter().filter(|&&b| b != 0).count() == 1);
            patch_xor(&mut viewer, w, h, r, &delta).unwrap();
        }
        assert_eq!(viewer, new);
        let bad = Rect {
            x: 60,
            y: 0,
            w: 20,
            h: 1,
        };
        assert!(patch_xor(&mut viewer, w, h, bad, &[0; 80]).is_err());
    }

    #[test]
    fn patch_refuses_bad_updates() {
        let mut f = frame(10, 10, 0);
        let r = Rect {
            x: 8,
            y: 0,
            w: 4,
            h: 1,
        };
        assert!(matches!(
            patch(&mut f, 10, 10, r, &[0; 16]),
            Err(PatchError::OutOfBounds(..))
        ));
        let r = Rect {
            x: u32::MAX,
            y: 0,
            w: 2,
            h: 1,
        };
        assert!(matches!(
            patch(&mut f, 10, 10, r, &[0; 8]),
            Err(PatchError::OutOfBounds(..))
        ));
        let r = Rect {
            x: 0,
            y: 0,
            w: 2,
            h: 2,
        };
        assert_eq!(
            patch(&mut f, 10, 10, r, &[0; 3]),
            Err(PatchError::WrongSize { got: 3, want: 16 })
        );
    }

    #[test]
    fn flow_control_bounds_frames_in_flight() {
        let mut fc = FlowControl::new(2);
        assert!(fc.can_send());
        assert_eq!(fc.on_send(), 1);
        assert_eq!(fc.on_send(), 2);
        assert!(!fc.can_send());
        fc.on_ack(7); // never sent: ignored
        assert!(!fc.can_send());
        fc.on_ack(1);
        assert!(fc.can_send());
        assert_eq!(fc.on_send(), 3);
        fc.on_ack(3); // cumulative
        assert_eq!(fc.in_flight(), 0);
        fc.on_ack(2); // stale
        assert_eq!(fc.in_flight(), 0);
    }
}
