//! The pointer on Windows: its position (`GetCursorInfo`, else `GetCursorPos`) in the
//! coordinates of the display last captured, and its image (`GetIconInfo`) when the cursor
//! changed.

use super::Origin;
use super::gdi::{self, CursorBits};
use crate::platform::{Pointer, PointerImage};
use std::sync::Arc;

pub struct WinPointer {
    origin: Arc<Origin>,
    /// The cursor handle last seen (0: none shown), to send the image only when it changes.
    last: Option<usize>,
}

impl WinPointer {
    pub fn new(origin: Arc<Origin>) -> Self {
        Self { origin, last: None }
    }
}

impl Pointer for WinPointer {
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)> {
        let (ox, oy) = self.origin.get();
        let Some(((x, y), handle)) = gdi::cursor_info() else {
            let (x, y) = gdi::cursor_pos()?;
            return Some(((x - ox, y - oy), None));
        };
        let handle = handle.unwrap_or(0);
        let image = if self.last == Some(handle) {
            None
        } else if handle == 0 {
            // Hidden: a transparent pixel.
            Some(PointerImage {
                width: 1,
                height: 1,
                hot_x: 0,
                hot_y: 0,
                rgba: vec![0; 4],
            })
        } else {
            // Not read (Wine cannot read another process's cursor): tried again next poll.
            gdi::cursor_bits(handle).and_then(|b| to_image(&b))
        };
        if image.is_some() {
            self.last = Some(handle);
        }
        Some(((x - ox, y - oy), image))
    }
}

/// A cursor's bits as premultiplied RGBA: its alpha where it has one, else its masks (the AND
/// mask's white is transparent; a monochrome cursor's inverting pixels show black).
fn to_image(b: &CursorBits) -> Option<PointerImage> {
    let (w, h) = (b.width as usize, b.height as usize);
    if w == 0 || h == 0 || w > 256 || h > 256 {
        return None;
    }
    let n = w * h;
    let px = |v: &[u8], i: usize| -> [u8; 4] {
        let s = v.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]);
        [s[0], s[1], s[2], s[3]]
    };
    let and = |i: usize| px(&b.mask, i)[0] != 0;
    let mut rgba = Vec::with_capacity(n * 4);
    match &b.color {
        Some(color) => {
            let has_alpha = (0..n).any(|i| px(color, i)[3] != 0);
            for i in 0..n {
                let [bl, g, r, a] = px(color, i);
                let a = if has_alpha {
                    a
                } else if and(i) {
                    0
                } else {
                    255
                };
                let pm = |c: u8| ((u16::from(c) * u16::from(a) + 127) / 255) as u8;
                rgba.extend_from_slice(&[pm(r), pm(g), pm(bl), a]);
            }
        }
        None => {
            for i in 0..n {
                let xor = px(&b.mask, n + i)[0] != 0;
                rgba.extend_from_slice(&match (and(i), xor) {
                    (true, false) => [0, 0, 0, 0],
                    (false, true) => [255, 255, 255, 255],
                    _ => [0, 0, 0, 255],
                });
            }
        }
    }
    Some(PointerImage {
        width: w as u16,
        height: h as u16,
        hot_x: b.hot_x.min(w as u32 - 1) as u16,
        hot_y: b.hot_y.min(h as u32 - 1) as u16,
        rgba,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_become_premultiplied_rgba() {
        // Monochrome 2×1: transparent, white, black, inverting (shown black).
        let px = |v: u8| [v, v, v, 0];
        let mono = CursorBits {
            width: 4,
            height: 1,
            hot_x: 9,
            hot_y: 0,
            color: None,
            // AND row, then XOR row.
            mask: [
                px(255),
                px(0),
                px(0),
                px(255),
                px(0),
                px(255),
                px(0),
                px(255),
            ]
            .concat(),
        };
        let img = to_image(&mono).expect("image");
        assert_eq!((img.width, img.height, img.hot_x, img.hot_y), (4, 1, 3, 0));
        assert_eq!(
            img.rgba,
            [
                [0, 0, 0, 0],
                [255, 255, 255, 255],
                [0, 0, 0, 255],
                [0, 0, 0, 255]
            ]
            .concat()
        );
        // Colour with alpha (BGRA, straight): premultiplied, red and blue swapped.
        let alpha = CursorBits {
            width: 2,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            color: Some(vec![255, 0, 200, 128, 10, 20, 30, 255]),
            mask: vec![0; 8],
        };
        let img = to_image(&alpha).expect("image");
        assert_eq!(img.rgba, vec![100, 0, 128, 128, 30, 20, 10, 255]);
        // Colour without alpha: the AND mask says what is transparent.
        let masked = CursorBits {
            color: Some(vec![1, 2, 3, 0, 4, 5, 6, 0]),
            mask: [px(255), px(0)].concat(),
            ..alpha
        };
        let img = to_image(&masked).expect("image");
        assert_eq!(img.rgba, vec![0, 0, 0, 0, 6, 5, 4, 255]);
    }
}
