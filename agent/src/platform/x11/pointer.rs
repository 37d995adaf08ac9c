//! The pointer on X11: position and image through XFixes; where XFixes is missing, the position
//! alone through enigo.

use crate::platform::{Pointer, PointerImage};
use enigo::{Enigo, Mouse, Settings};

/// The pointer's position and image through XFixes.
pub struct XFixesPointer {
    conn: x11rb::rust_connection::RustConnection,
    serial: Option<u32>,
}

impl XFixesPointer {
    pub fn connect() -> Option<Self> {
        use x11rb::protocol::xfixes::ConnectionExt as _;
        let (conn, _) = x11rb::connect(None).ok()?;
        conn.xfixes_query_version(5, 0).ok()?.reply().ok()?;
        Some(Self { conn, serial: None })
    }
}

impl Pointer for XFixesPointer {
    /// Position, and the image if it changed.
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)> {
        use x11rb::protocol::xfixes::ConnectionExt as _;
        let img = self.conn.xfixes_get_cursor_image().ok()?.reply().ok()?;
        let pos = (i32::from(img.x), i32::from(img.y));
        let changed = self.serial != Some(img.cursor_serial);
        self.serial = Some(img.cursor_serial);
        let shape = (changed && img.width <= 256 && img.height <= 256).then(|| PointerImage {
            width: img.width,
            height: img.height,
            hot_x: img.xhot,
            hot_y: img.yhot,
            // ARGB words, premultiplied, to RGBA bytes.
            rgba: img
                .cursor_image
                .iter()
                .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8, (p >> 24) as u8])
                .collect(),
        });
        Some((pos, shape))
    }
}

/// The pointer's position through enigo, without its image.
pub struct EnigoPointer(Enigo);

impl EnigoPointer {
    pub fn open() -> Option<Self> {
        Enigo::new(&Settings::default()).ok().map(Self)
    }
}

impl Pointer for EnigoPointer {
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)> {
        self.0.location().ok().map(|pos| (pos, None))
    }
}
