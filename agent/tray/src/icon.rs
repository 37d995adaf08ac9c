//! The tray icon, drawn in code so there are no image files to install: a disc that is blue with
//! a white ring when idle, red with a white dot (a "recording" look) while a session runs, and
//! grey while the agent cannot be reached.

/// What the icon should tell at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Offline,
    Idle,
    Active,
}

/// Side of the generated icon in pixels; panels scale it down as needed. (Windows asks for the
/// sizes its metrics name instead.)
#[cfg_attr(windows, allow(dead_code))]
pub const SIZE: u32 = 64;

const BLUE: [u8; 3] = [0x25, 0x63, 0xeb];
const RED: [u8; 3] = [0xdc, 0x26, 0x26];
const GREY: [u8; 3] = [0x80, 0x80, 0x80];
const WHITE: [u8; 3] = [0xff, 0xff, 0xff];

/// `size`×`size` RGBA pixels, row by row.
pub fn rgba(look: Look, size: u32) -> Vec<u8> {
    let disc = match look {
        Look::Offline => GREY,
        Look::Idle => BLUE,
        Look::Active => RED,
    };
    let half = size as f32 / 2.0;
    let mut out = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            // Distance of the pixel centre from the icon centre, as a fraction of the radius.
            let dx = x as f32 + 0.5 - half;
            let dy = y as f32 + 0.5 - half;
            let dist = (dx * dx + dy * dy).sqrt();
            let r = dist / half;
            // One pixel of soft edge so the disc is not jagged at small sizes.
            let coverage = (half - dist).clamp(0.0, 1.0);
            let white = match look {
                Look::Active => r < 0.4,
                Look::Idle | Look::Offline => (0.4..0.6).contains(&r),
            };
            let [cr, cg, cb] = if white { WHITE } else { disc };
            out.extend_from_slice(&[cr, cg, cb, (coverage * 255.0).round() as u8]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(buf: &[u8], size: u32, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * size + x) * 4) as usize;
        [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]
    }

    #[test]
    fn icon_has_the_right_size_and_transparent_corners() {
        for look in [Look::Offline, Look::Idle, Look::Active] {
            let buf = rgba(look, SIZE);
            assert_eq!(buf.len(), (SIZE * SIZE * 4) as usize);
            assert_eq!(pixel(&buf, SIZE, 0, 0)[3], 0);
            assert_eq!(pixel(&buf, SIZE, SIZE - 1, SIZE - 1)[3], 0);
        }
    }

    #[test]
    fn active_looks_clearly_different_from_idle() {
        let idle = rgba(Look::Idle, SIZE);
        let active = rgba(Look::Active, SIZE);
        // Near the rim: the disc colour itself.
        assert_eq!(pixel(&idle, SIZE, SIZE / 2, 4), [0x25, 0x63, 0xeb, 255]);
        assert_eq!(pixel(&active, SIZE, SIZE / 2, 4), [0xdc, 0x26, 0x26, 255]);
        // Centre: blue idle, white dot active.
        assert_eq!(
            pixel(&idle, SIZE, SIZE / 2, SIZE / 2),
            [0x25, 0x63, 0xeb, 255]
        );
        assert_eq!(
            pixel(&active, SIZE, SIZE / 2, SIZE / 2),
            [0xff, 0xff, 0xff, 255]
        );
        assert_ne!(rgba(Look::Offline, SIZE), idle);
    }
}
