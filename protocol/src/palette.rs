//! Indexed-palette form of a rectangle of pixels: the lossless transform that makes text cheap.
//!
//! Anti-aliased text on a flat background has a few dozen colours; written as a palette and
//! 1, 2, 4 or 8-bit indices it is a quarter to a thirty-second of its size before compression
//! even starts, and the indices compress better than the pixels (Tight's palette filter and
//! TigerVNC's encoders do the same). The encoder gives up (`None`) beyond [`MAX_COLOURS`], where
//! the plain pixels are the better input.
//!
//! Layout: one byte `n - 1` (1 ≤ n ≤ 256 colours), `n` pixels of 4 bytes (exactly as in the
//! frame, so decoding is exact), then — unless `n` is 1, a solid rectangle — each row's indices
//! packed most significant bit first at the narrowest of 1, 2, 4 or 8 bits that holds `n`, rows
//! padded to a whole byte.

use thiserror::Error;

/// Most colours a palette holds.
pub const MAX_COLOURS: usize = 256;
/// Largest rectangle decoded (an 8K screen): a solid one is 5 bytes whatever its size.
pub const MAX_PIXELS: usize = 7680 * 4320;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PaletteError {
    #[error("palette data is truncated")]
    Truncated,
    #[error("palette data is longer than its rectangle needs")]
    TrailingBytes,
    #[error("palette index {0} beyond the {1} colours given")]
    BadIndex(u8, usize),
    #[error("rectangle of {0}×{1} pixels is too large")]
    TooLarge(u32, u32),
    #[error("rectangle names the last palette before any was sent")]
    NoPalette,
    #[error("the first row repeats a row above it")]
    NoRowAbove,
}

fn bits_for(n: usize) -> usize {
    match n {
        0..=2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    }
}

fn row_bytes(width: usize, bits: usize) -> usize {
    (width * bits).div_ceil(8)
}

/// The distinct colours of `pixels` (4 bytes each, as little-endian words) in order of first
/// appearance and each pixel's index among them; `None` beyond [`MAX_COLOURS`].
pub(crate) fn index_colours(pixels: &[u8]) -> Option<(Vec<u32>, Vec<u8>)> {
    let mut colours: Vec<u32> = Vec::with_capacity(16);
    let mut index: Vec<u8> = Vec::with_capacity(pixels.len() / 4);
    // Runs of one colour are the common case: remember the last one.
    let (mut last, mut last_i) = (None::<u32>, 0u8);
    for px in pixels.chunks_exact(4) {
        let c = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        if last != Some(c) {
            last_i = match colours.iter().position(|&k| k == c) {
                Some(i) => i as u8,
                None if colours.len() < MAX_COLOURS => {
                    colours.push(c);
                    (colours.len() - 1) as u8
                }
                None => return None,
            };
            last = Some(c);
        }
        index.push(last_i);
    }
    Some((colours, index))
}

/// The palette form of `pixels` (`width` × `height`, 4 bytes a pixel, rows packed), or `None`
/// when it has more than [`MAX_COLOURS`] colours (or is empty or mis-sized).
pub fn encode(pixels: &[u8], width: u32, height: u32) -> Option<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || pixels.len() != w.checked_mul(h)?.checked_mul(4)? {
        return None;
    }
    let (colours, index) = index_colours(pixels)?;
    let n = colours.len();
    let bits = bits_for(n);
    let mut out = Vec::with_capacity(1 + 4 * n + if n > 1 { h * row_bytes(w, bits) } else { 0 });
    out.push((n - 1) as u8);
    for c in &colours {
        out.extend_from_slice(&c.to_le_bytes());
    }
    if n > 1 {
        let per_byte = 8 / bits;
        for row in index.chunks_exact(w) {
            for group in row.chunks(per_byte) {
                let mut b = 0u8;
                for (k, &i) in group.iter().enumerate() {
                    b |= i << (8 - bits * (k + 1));
                }
                out.push(b);
            }
        }
    }
    Some(out)
}

/// The longest palette form of a `width` × `height` rectangle (to bound decompression).
pub fn max_encoded_len(width: u32, height: u32) -> usize {
    (width as usize)
        .saturating_mul(height as usize)
        .saturating_add(1 + 4 * MAX_COLOURS)
}

/// Pixels (`width` × `height`, 4 bytes each) from their palette form. Untrusted input: every
/// length and index is checked.
pub fn decode(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PaletteError> {
    let (w, h) = (width as usize, height as usize);
    let len = w
        .checked_mul(h)
        .filter(|&p| p <= MAX_PIXELS)
        .ok_or(PaletteError::TooLarge(width, height))?
        * 4;
    let (&first, rest) = data.split_first().ok_or(PaletteError::Truncated)?;
    let n = first as usize + 1;
    let (palette, indices) = rest
        .split_at_checked(4 * n)
        .ok_or(PaletteError::Truncated)?;
    let colours: Vec<[u8; 4]> = palette
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect();
    let mut out = Vec::with_capacity(len);
    if n == 1 {
        if !indices.is_empty() {
            return Err(PaletteError::TrailingBytes);
        }
        for _ in 0..w * h {
            out.extend_from_slice(&colours[0]);
        }
        return Ok(out);
    }
    let bits = bits_for(n);
    let rb = row_bytes(w, bits);
    let need = rb
        .checked_mul(h)
        .ok_or(PaletteError::TooLarge(width, height))?;
    if indices.len() < need {
        return Err(PaletteError::Truncated);
    }
    if indices.len() > need {
        return Err(PaletteError::TrailingBytes);
    }
    let mask = ((1u16 << bits) - 1) as u8;
    let per_byte = 8 / bits;
    for row in indices.chunks_exact(rb.max(1)).take(h) {
        let mut x = 0;
        'row: for &b in row {
            for k in 0..per_byte {
                if x == w {
                    break 'row;
                }
                let i = (b >> (8 - bits * (k + 1))) & mask;
                let c = colours
                    .get(i as usize)
                    .ok_or(PaletteError::BadIndex(i, n))?;
                out.extend_from_slice(c);
                x += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, colours: u32, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        let mut out = Vec::new();
        for _ in 0..w * h {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let c = (s % colours).wrapping_mul(0x01030507);
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    #[test]
    fn the_decompression_bound_covers_every_palette_size() {
        for colours in [1, 2, 3, 16, 17, 256] {
            let px = image(61, 37, colours, 5);
            let enc = encode(&px, 61, 37).expect("encodes");
            assert!(enc.len() <= max_encoded_len(61, 37), "{colours} colours");
        }
    }

    #[test]
    fn round_trips_exactly_at_every_index_width() {
        for colours in [1, 2, 3, 4, 5, 16, 17, 200, 256] {
            for (w, h) in [(1, 1), (7, 3), (64, 64), (13, 1), (1, 9), (33, 17)] {
                let px = image(w, h, colours, w * 31 + h);
                let enc = encode(&px, w, h).expect("few colours");
                assert_eq!(decode(&enc, w, h).unwrap(), px, "{colours} colours {w}×{h}");
            }
        }
    }

    #[test]
    fn gives_up_beyond_256_colours_and_on_bad_sizes() {
        let px: Vec<u8> = (0..300u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(encode(&px, 300, 1), None);
        assert_eq!(encode(&px, 299, 1), None);
        assert_eq!(encode(&[], 0, 0), None);
    }

    #[test]
    fn text_like_tiles_shrink() {
        // Two colours and a few anti-aliasing shades: 4 bits an index instead of 32.
        let px = image(64, 64, 12, 7);
        let enc = encode(&px, 64, 64).unwrap();
        assert!(enc.len() <= 1 + 12 * 4 + 64 * 32, "{}", enc.len());
        // Solid: just the colour.
        let solid = image(64, 64, 1, 3);
        assert_eq!(encode(&solid, 64, 64).unwrap().len(), 5);
    }

    #[test]
    fn hostile_data_is_an_error_not_a_panic() {
        let px = image(8, 8, 3, 1);
        let enc = encode(&px, 8, 8).unwrap();
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut], 8, 8).is_err(), "cut at {cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(decode(&long, 8, 8), Err(PaletteError::TrailingBytes));
        // Three colours use 2-bit indices: index 3 names none.
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(decode(&bad, 8, 8), Err(PaletteError::BadIndex(3, 3)));
        assert!(matches!(
            decode(&enc, u32::MAX, u32::MAX),
            Err(PaletteError::TooLarge(..))
        ));
        // Arbitrary bytes never panic.
        let mut s = 1u32;
        for len in 0..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(1103515245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            let _ = decode(&junk, 5, 3);
        }
    }
}
