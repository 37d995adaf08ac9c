//! EDID 1.3/1.4 base-block parser. Pure: `&[u8]` in, [`Edid`] out.

/// Length of the EDID base block.
pub const EDID_BLOCK: usize = 128;
const HEADER: [u8; 8] = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdidError {
    #[error("EDID too short: {0} bytes, need 128")]
    TooShort(usize),
    #[error("EDID header mismatch")]
    BadHeader,
    #[error("EDID checksum mismatch (sum is {0:#04x})")]
    BadChecksum(u8),
    #[error("unsupported EDID version {0}.{1}")]
    UnsupportedVersion(u8, u8),
}

/// Decoded EDID base block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edid {
    pub version: u8,
    pub revision: u8,
    /// 3-letter PNP id; invalid letters become '?'.
    pub manufacturer: String,
    pub product_code: u16,
    /// Numeric serial (0 = not used).
    pub serial_number: u32,
    /// Display serial number descriptor (tag 0xFF).
    pub serial_string: Option<String>,
    /// Display product name descriptor (tag 0xFC).
    pub name: Option<String>,
    /// Physical size; from the cm fields, else from the first detailed timing.
    pub width_mm: u32,
    pub height_mm: u32,
    /// Preferred (native) resolution from the first detailed timing descriptor.
    pub native_width: u32,
    pub native_height: u32,
    /// Week of manufacture (0 = unknown, 0xFF = `year` is a model year).
    pub week: u8,
    pub year: u16,
}

/// Parse the base block of an EDID blob (extension blocks are ignored).
pub fn parse_edid(data: &[u8]) -> Result<Edid, EdidError> {
    let Some(b) = data.get(..EDID_BLOCK) else {
        return Err(EdidError::TooShort(data.len()));
    };
    if b[..8] != HEADER {
        return Err(EdidError::BadHeader);
    }
    let sum = b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
    if sum != 0 {
        return Err(EdidError::BadChecksum(sum));
    }
    let (version, revision) = (b[18], b[19]);
    if version != 1 {
        return Err(EdidError::UnsupportedVersion(version, revision));
    }

    let m = u16::from_be_bytes([b[8], b[9]]);
    let letter = |v: u16| -> char {
        let v = (v & 0x1F) as u8;
        if (1..=26).contains(&v) {
            char::from(b'A' + v - 1)
        } else {
            '?'
        }
    };
    let manufacturer: String = [letter(m >> 10), letter(m >> 5), letter(m)]
        .iter()
        .collect();

    let mut e = Edid {
        version,
        revision,
        manufacturer,
        product_code: u16::from_le_bytes([b[10], b[11]]),
        serial_number: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        week: b[16],
        year: 1990 + u16::from(b[17]),
        width_mm: u32::from(b[21]) * 10,
        height_mm: u32::from(b[22]) * 10,
        ..Edid::default()
    };

    let mut first_dtd = true;
    for d in b[54..126].chunks_exact(18) {
        let pixel_clock = u16::from_le_bytes([d[0], d[1]]);
        if pixel_clock != 0 {
            if first_dtd {
                first_dtd = false;
                e.native_width = u32::from(d[2]) | (u32::from(d[4] & 0xF0) << 4);
                e.native_height = u32::from(d[5]) | (u32::from(d[7] & 0xF0) << 4);
                if e.width_mm == 0 || e.height_mm == 0 {
                    e.width_mm = u32::from(d[12]) | (u32::from(d[14] & 0xF0) << 4);
                    e.height_mm = u32::from(d[13]) | (u32::from(d[14] & 0x0F) << 8);
                }
            }
            continue;
        }
        if d[2] != 0 {
            continue;
        }
        match d[3] {
            0xFF => e.serial_string = descriptor_text(&d[5..18]),
            0xFC => e.name = descriptor_text(&d[5..18]),
            _ => {}
        }
    }
    Ok(e)
}

/// Descriptor text: up to 13 bytes, ended by LF, padded with spaces.
fn descriptor_text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&c| c == 0x0A).unwrap_or(raw.len());
    let s: String = raw[..end]
        .iter()
        .filter(|c| (0x20..0x7F).contains(*c))
        .map(|&c| char::from(c))
        .collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn text_desc(tag: u8, text: &str) -> [u8; 18] {
        let mut d = [0u8; 18];
        d[3] = tag;
        let mut t = [0x20u8; 13];
        let n = text.len().min(13);
        t[..n].copy_from_slice(&text.as_bytes()[..n]);
        if n < 13 {
            t[n] = 0x0A;
        }
        d[5..18].copy_from_slice(&t);
        d
    }

    /// A valid EDID 1.4 base block: "DEL", product 0xA0B1, serial 0x12345678,
    /// 2019, 60x34 cm, 2560x1440 preferred, name "DELL U2719D",
    /// serial string "ABC123".
    pub(crate) fn sample_edid() -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[..8].copy_from_slice(&HEADER);
        let m: u16 = (4 << 10) | (5 << 5) | 12; // D E L
        b[8..10].copy_from_slice(&m.to_be_bytes());
        b[10..12].copy_from_slice(&0xA0B1u16.to_le_bytes());
        b[12..16].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        b[16] = 10;
        b[17] = 29; // 2019
        b[18] = 1;
        b[19] = 4;
        b[21] = 60;
        b[22] = 34;
        // DTD: 241.5 MHz, 2560 x 1440, image 597 x 336 mm
        let mut d = [0u8; 18];
        d[0..2].copy_from_slice(&24150u16.to_le_bytes());
        d[2] = (2560 & 0xFF) as u8;
        d[3] = 160;
        d[4] = ((2560 >> 8) as u8) << 4;
        d[5] = (1440 & 0xFF) as u8;
        d[6] = 41;
        d[7] = ((1440 >> 8) as u8) << 4;
        d[12] = (597 & 0xFF) as u8;
        d[13] = (336 & 0xFF) as u8;
        d[14] = (((597 >> 8) as u8) << 4) | ((336 >> 8) as u8);
        b[54..72].copy_from_slice(&d);
        b[72..90].copy_from_slice(&text_desc(0xFF, "ABC123"));
        b[90..108].copy_from_slice(&text_desc(0xFC, "DELL U2719D"));
        b[108..126].copy_from_slice(&text_desc(0xFD, ""));
        fix_checksum(&mut b);
        b
    }

    pub(crate) fn fix_checksum(b: &mut [u8]) {
        let sum = b[..127].iter().fold(0u8, |a, &x| a.wrapping_add(x));
        b[127] = 0u8.wrapping_sub(sum);
    }

    #[test]
    fn parses_valid_edid() {
        let e = parse_edid(&sample_edid()).expect("valid edid");
        assert_eq!(e.manufacturer, "DEL");
        assert_eq!(e.product_code, 0xA0B1);
        assert_eq!(e.serial_number, 0x1234_5678);
        assert_eq!(e.serial_string.as_deref(), Some("ABC123"));
        assert_eq!(e.name.as_deref(), Some("DELL U2719D"));
        assert_eq!((e.width_mm, e.height_mm), (600, 340));
        assert_eq!((e.native_width, e.native_height), (2560, 1440));
        assert_eq!(e.year, 2019);
        assert_eq!((e.version, e.revision), (1, 4));
    }

    #[test]
    fn size_falls_back_to_dtd_and_extensions_ignored() {
        let mut b = sample_edid();
        b[21] = 0;
        b[22] = 0;
        fix_checksum(&mut b);
        b.extend_from_slice(&[0xAB; 128]); // an extension block
        let e = parse_edid(&b).expect("valid edid");
        assert_eq!((e.width_mm, e.height_mm), (597, 336));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_edid(&[]), Err(EdidError::TooShort(0)));
        assert_eq!(parse_edid(&HEADER), Err(EdidError::TooShort(8)));
        assert_eq!(parse_edid(&[0xFF; 128]), Err(EdidError::BadHeader));
        let mut b = sample_edid();
        b[30] ^= 1;
        assert!(matches!(parse_edid(&b), Err(EdidError::BadChecksum(_))));
        let mut b = sample_edid();
        b[18] = 2;
        fix_checksum(&mut b);
        assert_eq!(parse_edid(&b), Err(EdidError::UnsupportedVersion(2, 4)));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 7;
        for len in [0usize, 1, 127, 128, 129, 256, 1000] {
            for _ in 0..50 {
                let mut v: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) as u8
                    })
                    .collect();
                if v.len() >= 128 {
                    v[..8].copy_from_slice(&HEADER);
                    v[18] = 1;
                    fix_checksum(&mut v);
                    assert!(parse_edid(&v).is_ok());
                } else {
                    assert!(parse_edid(&v).is_err());
                }
            }
        }
    }
}
