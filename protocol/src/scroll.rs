//! Scrolls and moved windows for streamed screens: "copy these rows from there" instead of
//! resending pixels the viewer already has (VNC's CopyRect, x11vnc's `-scrollcopyrect`, RDP's
//! screen-to-screen blit).
//!
//! The agent finds a vertical shift between the previous and the current frame inside the area
//! that changed ([`detect`]), or checks a window the platform saw move ([`verify_move`]),
//! applies the same copy to its previous frame ([`apply`]) and then diffs as usual: only the
//! strip the scroll or the move uncovered (and any other change) is sent as pixels. The viewer
//! applies the copy to its own picture first, so both stay identical.
//!
//! Rows are compared by hash, then confirmed byte for byte: a copy is only ever proposed for
//! rows that are exactly equal.

use crate::session::{Compression, EncodedRect};
use crate::tiles::Rect;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Rows a copied band must have at least: shorter ones save less than they cost.
pub const MIN_ROWS: u32 = 16;
/// Changed rows sampled for shift candidates.
const SAMPLES: usize = 64;

/// Copy `h` rows of `w` columns from (`src_x`, `src_y`) to (`x`, `dst_y`) (of the same frame,
/// as it was before the copy). A scroll has `src_x == x`; a moved window need not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRows {
    pub x: u32,
    pub w: u32,
    pub src_x: u32,
    pub src_y: u32,
    pub dst_y: u32,
    pub h: u32,
}

impl CopyRows {
    /// As a rectangle of a frame update: the destination, of [`Compression::CopyRect`], with
    /// the source row as data (4 bytes, little-endian), and for a copy across the source column
    /// after it (8 bytes in all). Copies across go only to viewers that announced
    /// [`crate::session::stream_feature::MOVE_RECT`], the others only to those that announced
    /// [`crate::session::stream_feature::COPY_RECT`].
    pub fn to_rect(&self) -> EncodedRect {
        let mut data = self.src_y.to_le_bytes().to_vec();
        if self.src_x != self.x {
            data.extend_from_slice(&self.src_x.to_le_bytes());
        }
        EncodedRect {
            rect: self.dst(),
            compression: Compression::CopyRect,
            data,
        }
    }

    /// From a rectangle of a frame update; `None` unless its data is exactly a source row, or
    /// a source row and column (untrusted: whether the copy fits the frame is [`apply`]'s
    /// check).
    pub fn from_rect(r: &EncodedRect) -> Option<Self> {
        if r.compression != Compression::CopyRect {
            return None;
        }
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(r.data.get(i..i + 4)?.try_into().ok()?))
        };
        let src_x = match r.data.len() {
            4 => r.rect.x,
            8 => word(4)?,
            _ => return None,
        };
        Some(CopyRows {
            x: r.rect.x,
            w: r.rect.w,
            src_x,
            src_y: word(0)?,
            dst_y: r.rect.y,
            h: r.rect.h,
        })
    }

    /// Where the copied rows land.
    pub fn dst(&self) -> Rect {
        Rect {
            x: self.x,
            y: self.dst_y,
            w: self.w,
            h: self.h,
        }
    }
}

fn row(frame: &[u8], width: u32, y: u32, x: u32, w: u32) -> &[u8] {
    let start = (y as usize * width as usize + x as usize) * 4;
    &frame[start..start + w as usize * 4]
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a over 8-byte words: fast, and collisions only cost a failed byte comparison.
    let mut h: u64 = 0xcbf29ce484222325;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(0x100000001b3);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

fn fits(r: Rect, width: u32, height: u32) -> bool {
    r.x.checked_add(r.w).is_some_and(|e| e <= width)
        && r.y.checked_add(r.h).is_some_and(|e| e <= height)
        && r.w > 0
        && r.h > 0
}

/// The largest band of rows inside `area` that moved vertically between `prev` and `cur`, if
/// one of at least [`MIN_ROWS`] rows did. `area` is where the frames differ (the caller's
/// bounding box of the change, tightened to pixels); frames are `width` × `height` BGRX.
pub fn detect(prev: &[u8], cur: &[u8], width: u32, height: u32, area: Rect) -> Option<CopyRows> {
    let len = width as usize * height as usize * 4;
    if prev.len() != len || cur.len() != len || !fits(area, width, height) || area.h < MIN_ROWS {
        return None;
    }
    let (x, w) = (area.x, area.w);
    let prev_h: Vec<u64> = (area.y..area.y + area.h)
        .map(|y| hash(row(prev, width, y, x, w)))
        .collect();
    let cur_h: Vec<u64> = (area.y..area.y + area.h)
        .map(|y| hash(row(cur, width, y, x, w)))
        .collect();
    // Where each distinct row of the previous frame was; rows repeated many times (blank
    // lines) say nothing about the shift.
    let mut at: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, &h) in prev_h.iter().enumerate() {
        let v = at.entry(h).or_default();
        if v.len() < 4 {
            v.push(i as u32);
        }
    }
    let changed: Vec<usize> = (0..cur_h.len())
        .filter(|&i| cur_h[i] != prev_h[i])
        .collect();
    let step = (changed.len() / SAMPLES).max(1);
    let mut votes: HashMap<i64, u32> = HashMap::new();
    for &i in changed.iter().step_by(step) {
        if let Some(ys) = at.get(&cur_h[i]).filter(|ys| ys.len() < 4) {
            for &p in ys {
                *votes.entry(i as i64 - p as i64).or_default() += 1;
            }
        }
    }
    let mut candidates: Vec<(i64, u32)> = votes.into_iter().filter(|&(d, _)| d != 0).collect();
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.abs().cmp(&b.0.abs())));
    let mut best: Option<CopyRows> = None;
    for &(dy, _) in candidates.iter().take(3) {
        // The longest run of rows i (area-relative) with cur[i] == prev[i - dy], exactly.
        let mut run_start = None;
        let n = area.h as i64;
        for i in 0..=n {
            let same = i < n && (0..n).contains(&(i - dy)) && {
                let (ci, pi) = (i as usize, (i - dy) as usize);
                cur_h[ci] == prev_h[pi]
                    && row(cur, width, area.y + ci as u32, x, w)
                        == row(prev, width, area.y + pi as u32, x, w)
            };
            match (same, run_start) {
                (true, None) => run_start = Some(i),
                (false, Some(s)) => {
                    let h = (i - s) as u32;
                    if h >= MIN_ROWS && best.is_none_or(|b| h > b.h) {
                        best = Some(CopyRows {
                            x,
                            w,
                            src_x: x,
                            src_y: area.y + (s - dy) as u32,
                            dst_y: area.y + s as u32,
                            h,
                        });
                    }
                    run_start = None;
                }
                _ => {}
            }
        }
    }
    best
}

/// Columns a moved band must have at least.
const MIN_COLUMNS: u32 = 16;

/// A window the platform saw move (its top-left `from` at the last frame, `to` now, `size`
/// big; on-screen or not, in screen coordinates): the largest band of its rows that shows now,
/// exactly, what showed at the old place, as a copy of at least [`MIN_ROWS`] rows. The hint is
/// only a hint: rows another window covers, or that the application redrew, are not copied.
pub fn verify_move(
    prev: &[u8],
    cur: &[u8],
    width: u32,
    height: u32,
    from: (i32, i32),
    to: (i32, i32),
    size: (u32, u32),
) -> Option<CopyRows> {
    let len = width as usize * height as usize * 4;
    if prev.len() != len || cur.len() != len {
        return None;
    }
    let (dx, dy) = (
        i64::from(to.0) - i64::from(from.0),
        i64::from(to.1) - i64::from(from.1),
    );
    if (dx, dy) == (0, 0) {
        return None;
    }
    // Where the window is now, on the screen, and whose old place was on the screen too.
    let span = |at: i32, len: u32, d: i64, screen: u32| {
        let lo = i64::from(at).max(0).max(d);
        let hi = (i64::from(at) + i64::from(len))
            .min(i64::from(screen))
            .min(i64::from(screen) + d);
        (lo < hi).then_some((lo as u32, hi as u32))
    };
    let (x0, x1) = span(to.0, size.0, dx, width)?;
    let (y0, y1) = span(to.1, size.1, dy, height)?;
    let w = x1 - x0;
    if w < MIN_COLUMNS || y1 - y0 < MIN_ROWS {
        return None;
    }
    let src_x = (i64::from(x0) - dx) as u32;
    let mut best: Option<CopyRows> = None;
    let mut run_start = None;
    for y in y0..=y1 {
        let same = y < y1
            && row(cur, width, y, x0, w) == row(prev, width, (i64::from(y) - dy) as u32, src_x, w);
        match (same, run_start) {
            (true, None) => run_start = Some(y),
            (false, Some(s)) => {
                let h = y - s;
                if h >= MIN_ROWS && best.is_none_or(|b| h > b.h) {
                    best = Some(CopyRows {
                        x: x0,
                        w,
                        src_x,
                        src_y: (i64::from(s) - dy) as u32,
                        dst_y: s,
                        h,
                    });
                }
                run_start = None;
            }
            _ => {}
        }
    }
    best
}

/// Applies `c` to `frame` (`width` × `height` BGRX) in place, as the viewer does. False (and
/// nothing changed) when the copy does not fit the frame: untrusted input.
pub fn apply(frame: &mut [u8], width: u32, height: u32, c: &CopyRows) -> bool {
    let len = width as usize * height as usize * 4;
    let src = Rect {
        x: c.src_x,
        y: c.src_y,
        w: c.w,
        h: c.h,
    };
    if frame.len() != len || !fits(src, width, height) || !fits(c.dst(), width, height) {
        return false;
    }
    let stride = width as usize * 4;
    let (from, to, n) = (c.src_x as usize * 4, c.x as usize * 4, c.w as usize * 4);
    // Rows in the order that never reads a row already overwritten (within a row,
    // `copy_within` is a memmove).
    let mut copy_row = |i: u32| {
        let s = (c.src_y + i) as usize * stride + from;
        let d = (c.dst_y + i) as usize * stride + to;
        frame.copy_within(s..s + n, d);
    };
    if c.dst_y > c.src_y {
        (0..c.h).rev().for_each(&mut copy_row);
    } else {
        (0..c.h).for_each(&mut copy_row);
    }
    true
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn a_copy_travels_as_a_rectangle_and_bad_ones_are_refused() {
        let c = CopyRows {
            x: 3,
            w: 100,
            src_x: 3,
            src_y: 40,
            dst_y: 20,
            h: 60,
        };
        let r = c.to_rect();
        assert_eq!(r.rect, c.dst());
        assert_eq!(CopyRows::from_rect(&r), Some(c));
        let mut long = r.clone();
        long.data.push(0);
        assert_eq!(CopyRows::from_rect(&long), None);
        let mut short = r.clone();
        short.data.pop();
        assert_eq!(CopyRows::from_rect(&short), None);
        let other = EncodedRect {
            compression: Compression::Zstd,
            ..r
        };
        assert_eq!(CopyRows::from_rect(&other), None);
        // A copy from beyond the frame is refused by `apply`, and the frame left as it was.
        let mut frame = vec![7u8; 100 * 100 * 4];
        let far = CopyRows { src_y: 90, ..c };
        assert!(!apply(&mut frame, 100, 100, &far));
        assert!(frame.iter().all(|&b| b == 7));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::changed_rects;

    /// A text-like page: each line a different pattern of "glyphs" on white, 8-pixel lines.
    fn page(width: u32, lines: u32, first_line: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..lines * 8 {
            let line = first_line + y / 8;
            for x in 0..width {
                let ink = (y % 8) < 6
                    && !(x / 6 + line * 7).is_multiple_of(5)
                    && ((x * 3 + y % 8) % 7 < 3);
                let c: u32 = if ink {
                    0x00202020 + line % 13
                } else {
                    0x00ffffff
                };
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out
    }

    fn with_margin(page: &[u8], width: u32, height: u32, margin: u32) -> Vec<u8> {
        // A static sidebar of `margin` columns on the left of the scrolling text.
        let mut out = Vec::new();
        for y in 0..height {
            for _ in 0..margin {
                out.extend_from_slice(&0x00336699u32.to_le_bytes());
            }
            let s = (y * width * 4) as usize;
            out.extend_from_slice(&page[s..s + width as usize * 4]);
        }
        out
    }

    #[test]
    fn a_scroll_becomes_a_copy_and_only_the_new_lines_are_pixels() {
        let (tw, lines, margin) = (200u32, 40u32, 30u32);
        let (width, height) = (tw + margin, lines * 8);
        let prev = with_margin(&page(tw, lines, 0), tw, height, margin);
        // Scrolled up by three lines: 24 rows.
        let cur = with_margin(&page(tw, lines, 3), tw, height, margin);
        let area = Rect {
            x: margin,
            y: 0,
            w: tw,
            h: height,
        };
        let c = detect(&prev, &cur, width, height, area).expect("a scroll");
        assert_eq!((c.src_y, c.dst_y, c.h), (24, 0, height - 24));
        assert_eq!((c.x, c.w), (margin, tw));
        // The viewer's picture after the copy differs from the new screen only in the new lines.
        let mut viewer = prev.clone();
        assert!(apply(&mut viewer, width, height, &c));
        let rest = changed_rects(Some(&viewer), &cur, width, height);
        let rows: u32 =
            rest.iter().map(|r| r.y + r.h).max().unwrap() - rest.iter().map(|r| r.y).min().unwrap();
        assert!(rows <= 64 + 24, "{rest:?}");
        assert!(rest.iter().all(|r| r.y + r.h > height - 24));
        // Scrolling down is found too.
        let back = detect(&cur, &prev, width, height, area).expect("a scroll back");
        assert_eq!((back.src_y, back.dst_y), (0, 24));
        let mut viewer = cur.clone();
        assert!(apply(&mut viewer, width, height, &back));
        let rest = changed_rects(Some(&viewer), &prev, width, height);
        assert!(rest.iter().all(|r| r.y < 64), "{rest:?}");
    }

    #[test]
    fn no_copy_where_nothing_moved() {
        let (w, lines) = (100u32, 20u32);
        let h = lines * 8;
        let prev = page(w, lines, 0);
        let mut cur = prev.clone();
        // One line retyped in place.
        for b in &mut cur[(w * 4 * 40) as usize..(w * 4 * 48) as usize] {
            *b = b.wrapping_add(1);
        }
        let area = Rect { x: 0, y: 0, w, h };
        assert_eq!(detect(&prev, &cur, w, h, area), None);
        // Wrong sizes and areas outside the frame are no copy, not a panic.
        assert_eq!(detect(&prev, &cur[1..], w, h, area), None);
        let outside = Rect {
            x: 50,
            y: 0,
            w: 60,
            h,
        };
        assert_eq!(detect(&prev, &cur, w, h, outside), None);
    }

    #[test]
    fn hostile_copies_are_refused() {
        let (w, h) = (10u32, 10u32);
        let mut f = vec![7u8; (w * h * 4) as usize];
        let before = f.clone();
        for c in [
            CopyRows {
                x: 0,
                w: 11,
                src_x: 0,
                src_y: 0,
                dst_y: 1,
                h: 2,
            },
            CopyRows {
                x: 0,
                w: 10,
                src_x: 0,
                src_y: 9,
                dst_y: 0,
                h: 2,
            },
            CopyRows {
                x: u32::MAX,
                w: 2,
                src_x: u32::MAX,
                src_y: 0,
                dst_y: 0,
                h: 1,
            },
            CopyRows {
                x: 0,
                w: 1,
                src_x: 0,
                src_y: 0,
                dst_y: u32::MAX,
                h: 1,
            },
        ] {
            assert!(!apply(&mut f, w, h, &c), "{c:?}");
        }
        assert_eq!(f, before);
    }

    /// A desktop of `w` × `h`: a checkered background, and a "window" of text-like rows of
    /// `ww` × `wh` at (`x`, `y`), possibly partly off the screen.
    fn desktop(w: u32, h: u32, win: (i32, i32), ww: u32, wh: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let content = page(ww, wh.div_ceil(8), 5);
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let (wx, wy) = (x - win.0, y - win.1);
                let c = if (0..ww as i32).contains(&wx) && (0..wh as i32).contains(&wy) {
                    let i = (wy as usize * ww as usize + wx as usize) * 4;
                    u32::from_le_bytes(content[i..i + 4].try_into().unwrap())
                } else if (x / 4 + y / 4) % 2 == 0 {
                    0x00404850
                } else {
                    0x00505860
                };
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn a_moved_window_becomes_a_copy_across_and_only_what_it_uncovered_is_pixels() {
        let (w, h, size) = (300u32, 200u32, (120u32, 80u32));
        let prev = desktop(w, h, (30, 40), size.0, size.1);
        let cur = desktop(w, h, (47, 31), size.0, size.1);
        let c = verify_move(&prev, &cur, w, h, (30, 40), (47, 31), size).expect("a move");
        assert_eq!((c.src_x, c.src_y, c.x, c.dst_y), (30, 40, 47, 31));
        assert_eq!((c.w, c.h), size);
        let mut viewer = prev.clone();
        assert!(apply(&mut viewer, w, h, &c));
        // What is left differs only where the window was and is no longer.
        let mut left = 0;
        for (i, (a, b)) in viewer.chunks(4).zip(cur.chunks(4)).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            if a != b {
                left += 1;
                assert!(
                    !(47..167).contains(&x) || !(31..111).contains(&y),
                    "({x}, {y})"
                );
                assert!(
                    (30..150).contains(&x) && (40..120).contains(&y),
                    "({x}, {y})"
                );
            }
        }
        assert!(left > 0);
        // On the wire it is an 8-byte copy, and back.
        let wire = c.to_rect();
        assert_eq!(wire.data.len(), 8);
        assert_eq!(CopyRows::from_rect(&wire), Some(c));
        let mut odd = wire.clone();
        odd.data.push(0);
        assert_eq!(CopyRows::from_rect(&odd), None);
    }

    #[test]
    fn a_move_hint_is_checked_against_the_pixels() {
        let (w, h, size) = (300u32, 200u32, (120u32, 80u32));
        let prev = desktop(w, h, (30, 40), size.0, size.1);
        let cur = desktop(w, h, (60, 60), size.0, size.1);
        // A lying hint (the window is not where it says) copies nothing.
        assert_eq!(
            verify_move(&prev, &cur, w, h, (30, 40), (70, 60), size),
            None
        );
        assert_eq!(
            verify_move(&prev, &cur, w, h, (30, 40), (30, 40), size),
            None
        );
        // Another window over the top of the new place: only the rows below it are copied.
        let mut covered = cur.clone();
        for y in 50..90usize {
            for x in 0..w as usize {
                covered[(y * w as usize + x) * 4..][..4].copy_from_slice(&[9, 9, 9, 0]);
            }
        }
        let c = verify_move(&prev, &covered, w, h, (30, 40), (60, 60), size).expect("a band");
        assert_eq!((c.dst_y, c.h, c.src_y), (90, 50, 70));
        // Partly off the screen (to the left and below): only the part on it, from where it was.
        let off = desktop(w, h, (-20, 150), size.0, size.1);
        let c = verify_move(&prev, &off, w, h, (30, 40), (-20, 150), size).expect("clipped");
        assert_eq!((c.x, c.w, c.src_x), (0, 100, 50));
        assert_eq!((c.dst_y, c.h, c.src_y), (150, 50, 40));
        let mut viewer = prev.clone();
        assert!(apply(&mut viewer, w, h, &c));
        // Hostile numbers are no copy, not a panic.
        for (from, to, sz) in [
            (
                (i32::MIN, i32::MIN),
                (i32::MAX, i32::MAX),
                (u32::MAX, u32::MAX),
            ),
            ((0, 0), (i32::MAX, 0), (u32::MAX, 10)),
            ((0, 0), (5, 5), (0, 0)),
        ] {
            let _ = verify_move(&prev, &cur, w, h, from, to, sz);
        }
        assert_eq!(
            verify_move(&prev, &cur[4..], w, h, (30, 40), (60, 60), size),
            None
        );
    }
}
