//! The pointer on X11: position and image through XFixes; where XFixes is missing, the position
//! alone through enigo.

use crate::platform::{Pointer, PointerImage};
use enigo::{Enigo, Mouse, Settings};

/// The pointer's position and image through XFixes. The image (kilobytes) is fetched only when
/// the server says it changed; the position is one small round trip.
pub struct XFixesPointer {
    conn: x11rb::rust_connection::RustConnection,
    root: u32,
    serial: Option<u32>,
    /// The server tells this connection when the image changes (else it is fetched each poll).
    notified: bool,
    /// The image may have changed since it was last fetched.
    stale: bool,
}

impl XFixesPointer {
    pub fn connect() -> Option<Self> {
        use x11rb::connection::Connection as _;
        use x11rb::protocol::xfixes::{ConnectionExt as _, CursorNotifyMask};
        let (conn, screen) = x11rb::connect(None).ok()?;
        conn.xfixes_query_version(5, 0).ok()?.reply().ok()?;
        let root = conn.setup().roots.get(screen)?.root;
        let notified = conn
            .xfixes_select_cursor_input(root, CursorNotifyMask::DISPLAY_CURSOR)
            .ok()
            .and_then(|c| c.check().ok())
            .is_some();
        Some(Self {
            conn,
            root,
            serial: None,
            notified,
            stale: true,
        })
    }

    /// Whether the image changed since the last look (its notifications read, not waited for).
    fn image_changed(&mut self) -> Option<bool> {
        use x11rb::connection::Connection as _;
        while let Some(e) = self.conn.poll_for_event().ok()? {
            if let x11rb::protocol::Event::XfixesCursorNotify(_) = e {
                self.stale = true;
            }
        }
        Some(std::mem::take(&mut self.stale) || !self.notified)
    }
}

impl Pointer for XFixesPointer {
    /// Position, and the image if it changed.
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)> {
        use x11rb::protocol::xfixes::ConnectionExt as _;
        use x11rb::protocol::xproto::ConnectionExt as _;
        if !self.image_changed()? {
            let p = self.conn.query_pointer(self.root).ok()?.reply().ok()?;
            return Some(((i32::from(p.root_x), i32::from(p.root_y)), None));
        }
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
