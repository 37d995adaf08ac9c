//! The packed palette form of a rectangle ("indexed"), for viewers that announced
//! [`crate::session::stream_feature::COMPACT`]: [`crate::palette`]'s transform in fewer bytes
//! where bytes matter most, one typed character (a 12×13 glyph and cursor: 21 bytes here, 35
//! there).
//!
//! - Colours are 3 bytes when they share their fourth byte (on X11 they always do), which is
//!   then given once.
//! - A rectangle whose colours are all in the last palette sent may name that palette instead of
//!   repeating it: text typed in one place has the same two colours key after key. Both sides
//!   keep the last palette in a [`Memory`]; the stream is ordered and lossless, so they agree.
//! - Indices run on across rows without padding, and a row that repeats the one above may be
//!   one bit ([`ROWS`]).
//!
//! Layout: a flags byte; unless [`REUSE`], `n - 1` and the `n` colours ([`SHARED_FOURTH`]: the
//! fourth byte once, then 3 bytes a colour; otherwise 4); then, unless the palette has a single
//! colour, one index per pixel at the narrowest of 1, 2, 4 or 8 bits that holds the palette
//! (with [`ROWS`], each row led by its repeat bit), most significant bit first, the last byte
//! padded with zeros.

use crate::palette::{MAX_COLOURS, MAX_PIXELS, PaletteError};

/// The rectangle uses the last palette sent ([`Memory`]).
pub const REUSE: u8 = 1;
/// The colours share their fourth byte, given once before them.
pub const SHARED_FOURTH: u8 = 2;
/// Each row of indices is led by a bit: 1 when it repeats the row above, and then its indices
/// are left out (a glyph's blank rows and straight strokes, a cursor block beside it).
pub const ROWS: u8 = 4;

/// The last palette sent on a stream (its colours as little-endian pixels), kept alike by the
/// agent and the viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    colours: Vec<u32>,
}

impl Memory {
    /// Notes the palette `data` (an encoded rectangle that was sent, or received and decoded)
    /// carries, if it carries one. Malformed data leaves the memory as it was.
    pub fn learn(&mut self, data: &[u8]) {
        if let Ok((Some(colours), _)) = header(data, self) {
            self.colours = colours;
        }
    }

    /// Forgets the palette (a new stream).
    pub fn clear(&mut self) {
        self.colours.clear();
    }
}

/// Index width for `n` colours: none for a single colour.
fn bits_for(n: usize) -> usize {
    match n {
        0..=1 => 0,
        2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    }
}

fn index_bytes(pixels: usize, bits: usize) -> usize {
    (pixels * bits).div_ceil(8)
}

/// The packed palette form of `pixels` (`width` × `height`, 4 bytes a pixel, rows packed), the
/// shorter of naming `memory`'s palette (when it holds every colour) and giving its own; `None`
/// beyond [`MAX_COLOURS`] colours or on a mis-sized rectangle. Call [`Memory::learn`] with the
/// result once it is sent.
pub fn encode(pixels: &[u8], width: u32, height: u32, memory: &Memory) -> Option<Vec<u8>> {
    let count = (width as usize).checked_mul(height as usize)?;
    if count == 0 || count > MAX_PIXELS || pixels.len() != count.checked_mul(4)? {
        return None;
    }
    let (colours, mut index) = crate::palette::index_colours(pixels)?;
    let n = colours.len();
    let shared = colours.iter().all(|c| c >> 24 == colours[0] >> 24);
    let own_len = 2 + if shared { 1 + 3 * n } else { 4 * n } + index_bytes(count, bits_for(n));
    // Where the memory holds every colour, its indices for them.
    let known = &memory.colours;
    let remap: Option<Vec<u8>> = colours
        .iter()
        .map(|c| known.iter().position(|k| k == c).map(|i| i as u8))
        .collect();
    let reuse_len = 1 + index_bytes(count, bits_for(known.len()));
    let mut out;
    let bits;
    match remap {
        Some(map) if !known.is_empty() && reuse_len <= own_len => {
            for i in &mut index {
                *i = map[*i as usize];
            }
            bits = bits_for(known.len());
            out = Vec::with_capacity(reuse_len);
            out.push(REUSE);
        }
        _ => {
            bits = bits_for(n);
            out = Vec::with_capacity(own_len);
            out.push(if shared { SHARED_FOURTH } else { 0 });
            out.push((n - 1) as u8);
            if shared {
                out.push((colours[0] >> 24) as u8);
            }
            for c in &colours {
                let b = c.to_le_bytes();
                out.extend_from_slice(if shared { &b[..3] } else { &b[..] });
            }
        }
    }
    if bits > 0 {
        let plain = pack(&index, width as usize, bits, false);
        let rows = pack(&index, width as usize, bits, true);
        if rows.len() < plain.len() {
            out[0] |= ROWS;
            out.extend_from_slice(&rows);
        } else {
            out.extend_from_slice(&plain);
        }
    }
    Some(out)
}

/// Bits written most significant first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u8,
    filled: usize,
}

impl BitWriter {
    fn put(&mut self, value: u8, bits: usize) {
        for k in (0..bits).rev() {
            self.acc |= ((value >> k) & 1) << (7 - self.filled);
            self.filled += 1;
            if self.filled == 8 {
                self.out.push(self.acc);
                (self.acc, self.filled) = (0, 0);
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.out.push(self.acc);
        }
        self.out
    }
}

/// The indices at `bits` each; with `rows`, each row led by a bit, 1 when it repeats the row
/// above (and then without its indices).
fn pack(index: &[u8], width: usize, bits: usize, rows: bool) -> Vec<u8> {
    let mut w = BitWriter::default();
    let mut above: Option<&[u8]> = None;
    for row in index.chunks_exact(width) {
        if rows {
            let same = above == Some(row);
            w.put(u8::from(same), 1);
            above = Some(row);
            if same {
                continue;
            }
        }
        for &i in row {
            w.put(i, bits);
        }
    }
    w.finish()
}

/// Reads bits most significant first.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn get(&mut self, bits: usize) -> Result<u8, PaletteError> {
        let mut v = 0u8;
        for _ in 0..bits {
            let byte = self.data.get(self.pos / 8).ok_or(PaletteError::Truncated)?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }
}

/// The palette `data` defines (None: it reuses `memory`'s) and where its indices start.
fn header(data: &[u8], memory: &Memory) -> Result<(Option<Vec<u32>>, usize), PaletteError> {
    let (&flags, rest) = data.split_first().ok_or(PaletteError::Truncated)?;
    if flags & REUSE != 0 {
        if memory.colours.is_empty() {
            return Err(PaletteError::NoPalette);
        }
        return Ok((None, 1));
    }
    let (&n1, rest) = rest.split_first().ok_or(PaletteError::Truncated)?;
    let n = usize::from(n1) + 1;
    let (fourth, rest, size) = if flags & SHARED_FOURTH != 0 {
        let (&f, rest) = rest.split_first().ok_or(PaletteError::Truncated)?;
        (Some(f), rest, 3)
    } else {
        (None, rest, 4)
    };
    let table = rest.get(..n * size).ok_or(PaletteError::Truncated)?;
    let colours = table
        .chunks_exact(size)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], fourth.unwrap_or_else(|| c[3])]))
        .collect();
    Ok((Some(colours), 2 + usize::from(fourth.is_some()) + n * size))
}

/// Longest encoded form of a `width` × `height` rectangle (to bound decompression).
pub fn max_encoded_len(width: u32, height: u32) -> usize {
    (width as usize)
        .saturating_mul(height as usize)
        .saturating_add(2 + 4 * MAX_COLOURS)
}

/// Pixels (`width` × `height`, 4 bytes each) from their packed palette form, learning its
/// palette into `memory`. Untrusted input: every length and index is checked, and on an error
/// the memory is left as it was.
pub fn decode(
    data: &[u8],
    width: u32,
    height: u32,
    memory: &mut Memory,
) -> Result<Vec<u8>, PaletteError> {
    let count = (width as usize)
        .checked_mul(height as usize)
        .filter(|&p| p <= MAX_PIXELS)
        .ok_or(PaletteError::TooLarge(width, height))?;
    let (own, start) = header(data, memory)?;
    let colours = own.as_ref().unwrap_or(&memory.colours);
    let n = colours.len();
    let bits = bits_for(n);
    let mut out = Vec::with_capacity(count * 4);
    if bits == 0 {
        if data.len() > start {
            return Err(PaletteError::TrailingBytes);
        }
        let c = colours[0].to_le_bytes();
        for _ in 0..count {
            out.extend_from_slice(&c);
        }
    } else {
        let w = width as usize * 4;
        let mut r = BitReader {
            data: &data[start..],
            pos: 0,
        };
        for y in 0..height as usize {
            if data[0] & ROWS != 0 && r.get(1)? == 1 {
                let above = y.checked_sub(1).ok_or(PaletteError::NoRowAbove)? * w;
                out.extend_from_within(above..above + w);
                continue;
            }
            for _ in 0..width {
                let i = r.get(bits)?;
                let c = colours
                    .get(usize::from(i))
                    .ok_or(PaletteError::BadIndex(i, n))?;
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        if r.pos.div_ceil(8) != r.data.len() {
            return Err(PaletteError::TrailingBytes);
        }
    }
    if let Some(c) = own {
        memory.colours = c;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, colours: u32, seed: u32, fourth: Option<u8>) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        let mut out = Vec::new();
        for _ in 0..w * h {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let mut c = (s % colours).wrapping_mul(0x01030507).to_le_bytes();
            if let Some(f) = fourth {
                c[3] = f;
            }
            out.extend_from_slice(&c);
        }
        out
    }

    /// Encodes and decodes like a stream: both memories learn what was sent.
    fn round_trip(px: &[u8], w: u32, h: u32, tx: &mut Memory, rx: &mut Memory) -> usize {
        let enc = encode(px, w, h, tx).expect("few colours");
        tx.learn(&enc);
        assert_eq!(decode(&enc, w, h, rx).unwrap(), px, "{w}×{h}");
        assert_eq!(tx, rx);
        enc.len()
    }

    #[test]
    fn round_trips_exactly_with_and_without_a_shared_fourth_byte() {
        for fourth in [None, Some(0), Some(0xff)] {
            for colours in [1, 2, 3, 4, 5, 16, 17, 200, 256] {
                for (w, h) in [(1, 1), (7, 3), (64, 64), (13, 1), (1, 9), (33, 17)] {
                    let px = image(w, h, colours, w * 31 + h, fourth);
                    round_trip(&px, w, h, &mut Memory::default(), &mut Memory::default());
                }
            }
        }
    }

    #[test]
    fn typed_characters_reuse_the_last_palette_and_cost_a_few_bytes() {
        let (mut tx, mut rx) = (Memory::default(), Memory::default());
        // A 12×13 rectangle of two colours, as one typed character in a bitmap-font terminal.
        let glyph = |seed| image(12, 13, 2, seed, Some(0));
        let first = round_trip(&glyph(1), 12, 13, &mut tx, &mut rx);
        // Flags, count, fourth byte, two colours, 156 one-bit indices.
        assert_eq!(first, 3 + 6 + 20);
        for seed in 2..6 {
            assert_eq!(round_trip(&glyph(seed), 12, 13, &mut tx, &mut rx), 1 + 20);
        }
        // A solid rectangle of a known colour: just the flag and its 1-bit indices... unless
        // its own one-colour palette is shorter, as it is for a large one.
        let solid = image(40, 40, 1, 3, Some(0));
        assert_eq!(round_trip(&solid, 40, 40, &mut tx, &mut rx), 2 + 1 + 3);
        // New colours: a palette of their own, learnt by both sides.
        let other = image(8, 8, 3, 9, Some(0xff));
        let len = round_trip(&other, 8, 8, &mut tx, &mut rx);
        assert_eq!(len, 3 + 9 + 16);
        assert_eq!(round_trip(&other, 8, 8, &mut tx, &mut rx), 1 + 16);
    }

    #[test]
    fn rows_that_repeat_the_row_above_cost_a_bit() {
        // "l" typed in a 6×13 bitmap font, the cursor block now beside it: 12×13, two colours.
        let glyph = [
            "000000", "000000", "011000", "001000", "001000", "001000", "001000", "001000",
            "001000", "001000", "011100", "000000", "000000",
        ];
        let (fg, bg) = ([0xff, 0xff, 0xff, 0], [0, 0, 0, 0]);
        let px: Vec<u8> = glyph
            .iter()
            .flat_map(|row| {
                let cells: Vec<[u8; 4]> = row
                    .chars()
                    .map(|c| if c == '1' { fg } else { bg })
                    .chain(std::iter::repeat_n(fg, 6))
                    .collect();
                cells
            })
            .flatten()
            .collect();
        let (mut tx, mut rx) = (Memory::default(), Memory::default());
        let first = round_trip(&px, 12, 13, &mut tx, &mut rx);
        // 13 row bits and 5 distinct rows of 12 bits: 73 bits in 10 bytes, not 20.
        assert_eq!(first, 3 + 6 + 10);
        assert_eq!(round_trip(&px, 12, 13, &mut tx, &mut rx), 1 + 10);
        // A first row that claims to repeat the one above it.
        assert_eq!(
            decode(&[REUSE | ROWS, 0x80, 0], 12, 2, &mut rx),
            Err(PaletteError::NoRowAbove)
        );
    }

    #[test]
    fn the_decompression_bound_covers_every_palette_size() {
        for colours in [1, 2, 3, 16, 17, 256] {
            let px = image(61, 37, colours, 5, None);
            let enc = encode(&px, 61, 37, &Memory::default()).expect("encodes");
            assert!(enc.len() <= max_encoded_len(61, 37), "{colours} colours");
        }
    }

    #[test]
    fn hostile_data_is_an_error_not_a_panic_and_keeps_the_memory() {
        let px = image(8, 8, 3, 1, Some(0));
        let mut mem = Memory::default();
        let enc = encode(&px, 8, 8, &mem).unwrap();
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut], 8, 8, &mut mem).is_err(), "cut at {cut}");
            assert_eq!(mem, Memory::default());
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(
            decode(&long, 8, 8, &mut mem),
            Err(PaletteError::TrailingBytes)
        );
        // Three colours use 2-bit indices: index 3 names none.
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(
            decode(&bad, 8, 8, &mut mem),
            Err(PaletteError::BadIndex(3, 3))
        );
        // Naming a palette before any was sent.
        assert_eq!(
            decode(&[REUSE, 0], 8, 1, &mut mem),
            Err(PaletteError::NoPalette)
        );
        assert!(matches!(
            decode(&enc, u32::MAX, u32::MAX, &mut mem),
            Err(PaletteError::TooLarge(..))
        ));
        assert_eq!(mem, Memory::default());
        // Arbitrary bytes never panic, with or without a palette to reuse.
        let mut s = 1u32;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(1103515245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            let _ = decode(&junk, 5, 3, &mut mem);
        }
    }
}
