//! The plane transform: lossless reordering of pixels before zstd, for viewers that announced
//! [`crate::session::stream_feature::COMPACT`].
//!
//! Pixels (blue, green, red, fourth byte) become four planes: all green bytes, then blue XOR
//! green, red XOR green, and the fourth bytes. Grey is where text, its anti-aliasing and most
//! interface chrome live, and there blue, green and red are equal: two planes turn to zeros and
//! the fourth byte (unused) is constant, so zstd sees one plane of real data instead of every
//! pixel's four interleaved bytes. The same holds for the XOR of two grey pictures. The
//! transform is its own check: any byte string of whole pixels goes through and back exactly.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("plane data of {0} bytes is not whole pixels")]
pub struct PlanesError(pub usize);

/// The planes of `pixels` (4 bytes each; a trailing partial pixel is an error).
pub fn split(pixels: &[u8]) -> Result<Vec<u8>, PlanesError> {
    if !pixels.len().is_multiple_of(4) {
        return Err(PlanesError(pixels.len()));
    }
    let n = pixels.len() / 4;
    let mut out = vec![0u8; pixels.len()];
    let (g, rest) = out.split_at_mut(n);
    let (b, rest) = rest.split_at_mut(n);
    let (r, x) = rest.split_at_mut(n);
    for (i, px) in pixels.chunks_exact(4).enumerate() {
        g[i] = px[1];
        b[i] = px[0] ^ px[1];
        r[i] = px[2] ^ px[1];
        x[i] = px[3];
    }
    Ok(out)
}

/// The pixels whose planes are `planes` (the inverse of [`split`]).
pub fn join(planes: &[u8]) -> Result<Vec<u8>, PlanesError> {
    if !planes.len().is_multiple_of(4) {
        return Err(PlanesError(planes.len()));
    }
    let n = planes.len() / 4;
    let (g, rest) = planes.split_at(n);
    let (b, rest) = rest.split_at(n);
    let (r, x) = rest.split_at(n);
    let mut out = Vec::with_capacity(planes.len());
    for i in 0..n {
        out.extend_from_slice(&[b[i] ^ g[i], g[i], r[i] ^ g[i], x[i]]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pixel_string_goes_through_and_back() {
        let mut s = 7u32;
        for len in (0..400).step_by(4) {
            let px: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(1103515245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            assert_eq!(join(&split(&px).unwrap()).unwrap(), px);
        }
        assert_eq!(split(&[1, 2, 3]), Err(PlanesError(3)));
        assert_eq!(join(&[1, 2, 3, 4, 5]), Err(PlanesError(5)));
    }

    #[test]
    fn grey_leaves_one_plane_of_data() {
        let px: Vec<u8> = (0..64u8).flat_map(|v| [v * 3, v * 3, v * 3, 0]).collect();
        let planes = split(&px).unwrap();
        assert_eq!(
            &planes[..64],
            &(0..64u8).map(|v| v * 3).collect::<Vec<_>>()[..]
        );
        assert!(planes[64..].iter().all(|&b| b == 0));
    }
}
