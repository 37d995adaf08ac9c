//! Draws the remote screen straight into an X11 child window of the viewer, only the rectangles
//! that changed, as VNC viewers do.
//!
//! eframe redraws its whole window on every repaint; under a software renderer (llvmpipe, a VM
//! without a GPU, Xvfb) that is ~13 ms of CPU for a 1280×800 window, and typing made 55–70 of
//! them a second. Here the decoder thread puts each changed rectangle into a server-side pixmap
//! (a copy of the remote screen) and composites just that area into a child window laid over
//! the place egui reserves for the screen (XRender, scaled when the screen is fitted). egui only
//! repaints for its own widgets. The child takes no input (an empty SHAPE input region), so
//! pointer and keys reach the viewer's window as before.
//!
//! Anything egui draws over the screen (a menu, a tooltip) would be hidden beneath the child, so
//! the viewer unmaps it while such a layer is open and egui draws the screen as a texture again.
//! Any failure here (no X11, an unusual visual, no RENDER) leaves the egui path on its own.

use std::sync::{Arc, Mutex, MutexGuard};
use tether_protocol::tiles::Rect;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::render::{
    self, ConnectionExt as _, CreatePictureAux, PictOp, PictType, Pictformat, Picture, Transform,
};
use x11rb::protocol::shape::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    ClipOrdering, ConfigureWindowAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask,
    Gcontext, ImageFormat, ImageOrder, Pixmap, VisualClass, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// Why the screen cannot be drawn natively (the viewer then draws it with egui).
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    #[error("the viewer's window is not an X11 window")]
    NotX11,
    #[error("X11: {0}")]
    Connect(#[from] x11rb::errors::ConnectError),
    #[error("X11: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    #[error("X11: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    #[error("X11: {0}")]
    Id(#[from] x11rb::errors::ReplyOrIdError),
    #[error("the X server has no {0}")]
    Missing(&'static str),
}

/// Where the screen goes in the viewer's window, in window pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

/// The remote screen as the X server holds it.
struct Screen {
    pixmap: Pixmap,
    picture: Picture,
    w: u32,
    h: u32,
}

/// The remote pointer: its image (premultiplied ARGB) and hot spot.
struct Pointer {
    pixmap: Pixmap,
    picture: Picture,
    w: u32,
    h: u32,
    hot: (i32, i32),
}

struct State {
    window: Window,
    window_picture: Picture,
    /// For pixmaps of the screen's depth.
    gc: Gcontext,
    root: Window,
    depth: u8,
    format: Pictformat,
    argb: Pictformat,
    screen: Option<Screen>,
    pointer: Option<Pointer>,
    pointer_at: Option<(i32, i32)>,
    place: Option<Place>,
    /// The sampling set on the pictures, for this screen size and place.
    sampling: Option<(u32, u32, u32, u32)>,
}

pub struct Presenter {
    conn: RustConnection,
    state: Mutex<State>,
}

impl Presenter {
    /// A child window of `parent` (unmapped until [`Presenter::place`]), and a thread that
    /// redraws it when it is exposed.
    pub fn new(parent: Window) -> Result<Arc<Self>, PresentError> {
        let (conn, _) = x11rb::connect(None)?;
        conn.render_query_version(0, 11)?.reply()?;
        conn.extension_information(shape::X11_EXTENSION_NAME)?
            .ok_or(PresentError::Missing("SHAPE extension"))?;
        let setup = conn.setup();
        // The decoder's copy of the screen is BGRX, which is what a 24-bit TrueColor visual
        // with the usual masks takes as it is on a little-endian wire.
        if setup.image_byte_order != ImageOrder::LSB_FIRST {
            return Err(PresentError::Missing("little-endian image format"));
        }
        let root = conn.get_geometry(parent)?.reply()?.root;
        let screen = setup
            .roots
            .iter()
            .find(|s| s.root == root)
            .ok_or(PresentError::Missing("screen for the window"))?;
        let depth = screen.root_depth;
        let bgrx = screen
            .allowed_depths
            .iter()
            .filter(|d| d.depth == depth)
            .flat_map(|d| &d.visuals)
            .any(|v| {
                v.visual_id == screen.root_visual
                    && v.class == VisualClass::TRUE_COLOR
                    && (v.red_mask, v.green_mask, v.blue_mask) == (0xff0000, 0xff00, 0xff)
            });
        let bpp32 = setup
            .pixmap_formats
            .iter()
            .any(|f| f.depth == depth && f.bits_per_pixel == 32);
        if depth != 24 || !bgrx || !bpp32 {
            return Err(PresentError::Missing("24-bit BGRX visual"));
        }
        let formats = conn.render_query_pict_formats()?.reply()?;
        let format = formats
            .screens
            .iter()
            .flat_map(|s| &s.depths)
            .flat_map(|d| &d.visuals)
            .find(|v| v.visual == screen.root_visual)
            .map(|v| v.format)
            .ok_or(PresentError::Missing("RENDER format for the screen"))?;
        let argb = formats
            .formats
            .iter()
            .find(|f| {
                let d = &f.direct;
                f.type_ == PictType::DIRECT
                    && f.depth == 32
                    && (d.alpha_shift, d.red_shift, d.green_shift, d.blue_shift) == (24, 16, 8, 0)
                    && (d.alpha_mask, d.red_mask, d.green_mask, d.blue_mask)
                        == (0xff, 0xff, 0xff, 0xff)
            })
            .map(|f| f.id)
            .ok_or(PresentError::Missing("ARGB32 RENDER format"))?;

        let window = conn.generate_id()?;
        conn.create_window(
            depth,
            window,
            parent,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            screen.root_visual,
            // No background: the server never clears it to a colour before we draw.
            &CreateWindowAux::new()
                .background_pixmap(x11rb::NONE)
                .border_pixel(0)
                .colormap(screen.default_colormap)
                .event_mask(EventMask::EXPOSURE),
        )?;
        // Input passes through to the viewer's window: egui keeps the pointer and the keys.
        conn.shape_rectangles(
            shape::SO::SET,
            shape::SK::INPUT,
            ClipOrdering::UNSORTED,
            window,
            0,
            0,
            &[],
        )?;
        let window_picture = conn.generate_id()?;
        conn.render_create_picture(window_picture, window, format, &CreatePictureAux::new())?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, root, &CreateGCAux::new().graphics_exposures(0))?;
        conn.flush()?;
        let me = Arc::new(Presenter {
            conn,
            state: Mutex::new(State {
                window,
                window_picture,
                gc,
                root,
                depth,
                format,
                argb,
                screen: None,
                pointer: None,
                pointer_at: None,
                place: None,
                sampling: None,
            }),
        });
        let events = Arc::clone(&me);
        std::thread::Builder::new()
            .name("viewer-present".into())
            .spawn(move || events.events())
            .map_err(|e| PresentError::Connection(e.into()))?;
        Ok(me)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Redraws what the server uncovers, until the connection closes.
    fn events(&self) {
        loop {
            match self.conn.wait_for_event() {
                Ok(Event::Expose(e)) => {
                    let s = self.lock();
                    let r = Rect {
                        x: u32::from(e.x),
                        y: u32::from(e.y),
                        w: u32::from(e.width),
                        h: u32::from(e.height),
                    };
                    if let Err(e) = self.draw_window_rect(&s, r).and_then(|()| self.flush()) {
                        tracing::debug!("viewer: redrawing after expose: {e}");
                    }
                }
                Ok(Event::Error(e)) => tracing::debug!("viewer: X11 error {e:?}"),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("viewer: X11 connection closed: {e}");
                    return;
                }
            }
        }
    }

    fn flush(&self) -> Result<(), PresentError> {
        Ok(self.conn.flush()?)
    }

    /// True while the child window shows the screen (the window need not redraw for frames).
    pub fn showing(&self) -> bool {
        self.lock().place.is_some()
    }

    /// Shows the screen at `place` in the viewer's window, or hides it (`None`).
    pub fn place(&self, place: Option<Place>) {
        let mut s = self.lock();
        if s.place == place {
            return;
        }
        let result = (|| -> Result<(), PresentError> {
            match place {
                None => {
                    self.conn.unmap_window(s.window)?;
                }
                Some(p) => {
                    self.conn.configure_window(
                        s.window,
                        &ConfigureWindowAux::new()
                            .x(p.x)
                            .y(p.y)
                            .width(p.w.max(1))
                            .height(p.h.max(1)),
                    )?;
                    if s.place.is_none() {
                        self.conn.map_window(s.window)?;
                    }
                }
            }
            s.place = place;
            self.sample(&mut s)?;
            // Mapping or growing exposes the window, and the expose redraws it; a move or a
            // shrink does not, so draw it all now.
            self.draw_all(&s)?;
            self.flush()
        })();
        if let Err(e) = result {
            tracing::debug!("viewer: placing the screen: {e}");
        }
    }

    /// Takes the decoder's copy of the screen (BGRX, `w`×`h`) after a frame changed `changed`
    /// (`None`: all of it), and draws what changed.
    pub fn frame(&self, fb: &[u8], w: u32, h: u32, changed: Option<&[Rect]>) {
        let mut s = self.lock();
        let result = (|| -> Result<(), PresentError> {
            let resized = s.screen.as_ref().is_none_or(|sc| (sc.w, sc.h) != (w, h));
            if resized {
                self.new_screen(&mut s, w, h)?;
            }
            let whole = [Rect { x: 0, y: 0, w, h }];
            let rects = match changed {
                Some(r) if !resized => r,
                _ => &whole[..],
            };
            for r in rects {
                self.put(&s, fb, w, *r)?;
            }
            if s.place.is_some() {
                for r in rects {
                    self.draw(&s, *r)?;
                }
            }
            self.flush()
        })();
        if let Err(e) = result {
            tracing::debug!("viewer: drawing a frame: {e}");
        }
    }

    /// The remote pointer moved to `at` (remote pixels).
    pub fn pointer_moved(&self, at: (i32, i32)) {
        let mut s = self.lock();
        let old = pointer_rect(&s);
        s.pointer_at = Some(at);
        let new = pointer_rect(&s);
        let result = (|| -> Result<(), PresentError> {
            if s.place.is_none() || old == new {
                return Ok(());
            }
            for r in [old, new].into_iter().flatten() {
                self.draw(&s, r)?;
            }
            self.flush()
        })();
        if let Err(e) = result {
            tracing::debug!("viewer: drawing the pointer: {e}");
        }
    }

    /// The remote pointer's new image: `rgba` premultiplied, `w`×`h`, with its hot spot.
    pub fn pointer_shape(&self, rgba: &[u8], w: u16, h: u16, hot: (u16, u16)) {
        let mut s = self.lock();
        let result = (|| -> Result<(), PresentError> {
            let old = pointer_rect(&s);
            if let Some(p) = s.pointer.take() {
                self.conn.render_free_picture(p.picture)?;
                self.conn.free_pixmap(p.pixmap)?;
            }
            let (w32, h32) = (u32::from(w), u32::from(h));
            if w == 0 || h == 0 || rgba.len() != w32 as usize * h32 as usize * 4 {
                return Ok(());
            }
            let pixmap = self.conn.generate_id()?;
            self.conn.create_pixmap(32, pixmap, s.root, w, h)?;
            let gc = self.conn.generate_id()?;
            self.conn.create_gc(gc, pixmap, &CreateGCAux::new())?;
            // ARGB32 on a little-endian wire is B, G, R, A.
            let bgra: Vec<u8> = rgba
                .chunks_exact(4)
                .flat_map(|p| [p[2], p[1], p[0], p[3]])
                .collect();
            self.conn
                .put_image(ImageFormat::Z_PIXMAP, pixmap, gc, w, h, 0, 0, 0, 32, &bgra)?;
            self.conn.free_gc(gc)?;
            let picture = self.conn.generate_id()?;
            self.conn
                .render_create_picture(picture, pixmap, s.argb, &CreatePictureAux::new())?;
            s.pointer = Some(Pointer {
                pixmap,
                picture,
                w: w32,
                h: h32,
                hot: (i32::from(hot.0), i32::from(hot.1)),
            });
            s.sampling = None;
            self.sample(&mut s)?;
            if s.place.is_some() {
                for r in [old, pointer_rect(&s)].into_iter().flatten() {
                    self.draw(&s, r)?;
                }
            }
            self.flush()
        })();
        if let Err(e) = result {
            tracing::debug!("viewer: the pointer's image: {e}");
        }
    }

    fn new_screen(&self, s: &mut State, w: u32, h: u32) -> Result<(), PresentError> {
        if let Some(old) = s.screen.take() {
            self.conn.render_free_picture(old.picture)?;
            self.conn.free_pixmap(old.pixmap)?;
        }
        let (pw, ph) = (clamp16(w), clamp16(h));
        let pixmap = self.conn.generate_id()?;
        self.conn.create_pixmap(s.depth, pixmap, s.root, pw, ph)?;
        let picture = self.conn.generate_id()?;
        self.conn
            .render_create_picture(picture, pixmap, s.format, &CreatePictureAux::new())?;
        s.screen = Some(Screen {
            pixmap,
            picture,
            w,
            h,
        });
        s.sampling = None;
        self.sample(s)
    }

    /// Rectangle `r` of `fb` (BGRX, `width` wide) into the screen's pixmap, in requests the
    /// server accepts.
    fn put(&self, s: &State, fb: &[u8], width: u32, r: Rect) -> Result<(), PresentError> {
        let Some(screen) = &s.screen else {
            return Ok(());
        };
        let (width, rw) = (width as usize, r.w as usize);
        if rw == 0 || r.h == 0 {
            return Ok(());
        }
        let max = self.conn.maximum_request_bytes().saturating_sub(64);
        let rows = (max / (rw * 4)).max(1);
        let mut data = Vec::with_capacity(rw * 4 * rows.min(r.h as usize));
        let mut y = r.y as usize;
        let end = (r.y + r.h) as usize;
        while y < end {
            let n = rows.min(end - y);
            data.clear();
            for row in y..y + n {
                let at = (row * width + r.x as usize) * 4;
                // The rectangle was checked against the screen when it was patched.
                let Some(src) = fb.get(at..at + rw * 4) else {
                    return Ok(());
                };
                data.extend_from_slice(src);
            }
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                screen.pixmap,
                s.gc,
                clamp16(r.w),
                clamp16(n as u32),
                clamp_i16(r.x as i32),
                clamp_i16(y as i32),
                0,
                s.depth,
                &data,
            )?;
            y += n;
        }
        Ok(())
    }

    /// Sets how the screen and the pointer are sampled for the current place: exact pixels at
    /// 1:1, bilinear when scaled.
    fn sample(&self, s: &mut State) -> Result<(), PresentError> {
        let (Some(screen), Some(place)) = (&s.screen, s.place) else {
            return Ok(());
        };
        let key = (screen.w, screen.h, place.w, place.h);
        if s.sampling == Some(key) {
            return Ok(());
        }
        let one = (screen.w, screen.h) == (place.w, place.h);
        let t = if one {
            identity()
        } else {
            Transform {
                matrix11: fixed(f64::from(screen.w) / f64::from(place.w.max(1))),
                matrix22: fixed(f64::from(screen.h) / f64::from(place.h.max(1))),
                ..identity()
            }
        };
        let filter: &[u8] = if one { b"nearest" } else { b"bilinear" };
        let pictures = [Some(screen.picture), s.pointer.as_ref().map(|p| p.picture)];
        for picture in pictures.into_iter().flatten() {
            self.conn.render_set_picture_transform(picture, t)?;
            self.conn.render_set_picture_filter(picture, filter, &[])?;
        }
        s.sampling = Some(key);
        Ok(())
    }

    fn draw_all(&self, s: &State) -> Result<(), PresentError> {
        match &s.screen {
            Some(sc) => self.draw(
                s,
                Rect {
                    x: 0,
                    y: 0,
                    w: sc.w,
                    h: sc.h,
                },
            ),
            None => Ok(()),
        }
    }

    /// Draws remote rectangle `r` (and the pointer where it overlaps) into the window.
    fn draw(&self, s: &State, r: Rect) -> Result<(), PresentError> {
        let (Some(screen), Some(place)) = (&s.screen, s.place) else {
            return Ok(());
        };
        let Some(d) = to_window(r, (screen.w, screen.h), place) else {
            return Ok(());
        };
        self.draw_window_rect(s, d)
    }

    /// Draws window rectangle `d` from the screen's pixmap, then the pointer over it.
    fn draw_window_rect(&self, s: &State, d: Rect) -> Result<(), PresentError> {
        let (Some(screen), Some(place)) = (&s.screen, s.place) else {
            return Ok(());
        };
        let Some(d) = intersect(
            d,
            Rect {
                x: 0,
                y: 0,
                w: place.w,
                h: place.h,
            },
        ) else {
            return Ok(());
        };
        let (x, y) = (clamp_i16(d.x as i32), clamp_i16(d.y as i32));
        self.conn.render_composite(
            PictOp::SRC,
            screen.picture,
            x11rb::NONE,
            s.window_picture,
            x,
            y,
            0,
            0,
            x,
            y,
            clamp16(d.w),
            clamp16(d.h),
        )?;
        if let (Some(p), Some(pr)) = (&s.pointer, pointer_rect(s))
            && let Some(pd) = to_window(pr, (screen.w, screen.h), place)
            && let Some(i) = intersect(pd, d)
        {
            let (ox, oy) = pointer_origin(s, (screen.w, screen.h), place);
            self.conn.render_composite(
                PictOp::OVER,
                p.picture,
                x11rb::NONE,
                s.window_picture,
                clamp_i16(i.x as i32 - ox),
                clamp_i16(i.y as i32 - oy),
                0,
                0,
                clamp_i16(i.x as i32),
                clamp_i16(i.y as i32),
                clamp16(i.w),
                clamp16(i.h),
            )?;
        }
        Ok(())
    }
}

/// The pointer's rectangle on the remote screen (clipped to it), if it is shown.
fn pointer_rect(s: &State) -> Option<Rect> {
    let (p, (x, y), screen) = (s.pointer.as_ref()?, s.pointer_at?, s.screen.as_ref()?);
    let (x0, y0) = (x - p.hot.0, y - p.hot.1);
    let x1 = (x0 + p.w as i32).min(screen.w as i32);
    let y1 = (y0 + p.h as i32).min(screen.h as i32);
    let (x0, y0) = (x0.max(0), y0.max(0));
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0 as u32,
        y: y0 as u32,
        w: (x1 - x0) as u32,
        h: (y1 - y0) as u32,
    })
}

/// Where the pointer image's top-left lands in the window (before the screen's edges clip it).
fn pointer_origin(s: &State, (sw, sh): (u32, u32), place: Place) -> (i32, i32) {
    let (Some(p), Some((x, y))) = (&s.pointer, s.pointer_at) else {
        return (0, 0);
    };
    let kx = f64::from(place.w) / f64::from(sw.max(1));
    let ky = f64::from(place.h) / f64::from(sh.max(1));
    (
        (f64::from(x - p.hot.0) * kx).floor() as i32,
        (f64::from(y - p.hot.1) * ky).floor() as i32,
    )
}

/// Remote rectangle `r` on a `sw`×`sh` screen, in the child window's pixels at `place`:
/// widened by a pixel when scaled (bilinear reads the neighbours).
fn to_window(r: Rect, (sw, sh): (u32, u32), place: Place) -> Option<Rect> {
    if (sw, sh) == (place.w, place.h) {
        return intersect(
            r,
            Rect {
                x: 0,
                y: 0,
                w: sw,
                h: sh,
            },
        );
    }
    let kx = f64::from(place.w) / f64::from(sw.max(1));
    let ky = f64::from(place.h) / f64::from(sh.max(1));
    let x0 = (f64::from(r.x) * kx).floor() as i64 - 1;
    let y0 = (f64::from(r.y) * ky).floor() as i64 - 1;
    let x1 = (f64::from(r.x + r.w) * kx).ceil() as i64 + 1;
    let y1 = (f64::from(r.y + r.h) * ky).ceil() as i64 + 1;
    let (x0, y0) = (x0.max(0), y0.max(0));
    let (x1, y1) = (x1.min(i64::from(place.w)), y1.min(i64::from(place.h)));
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0 as u32,
        y: y0 as u32,
        w: (x1 - x0) as u32,
        h: (y1 - y0) as u32,
    })
}

fn intersect(a: Rect, b: Rect) -> Option<Rect> {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
}

fn fixed(v: f64) -> render::Fixed {
    (v * 65536.0).round() as render::Fixed
}

fn identity() -> Transform {
    Transform {
        matrix11: fixed(1.0),
        matrix12: 0,
        matrix13: 0,
        matrix21: 0,
        matrix22: fixed(1.0),
        matrix23: 0,
        matrix31: 0,
        matrix32: 0,
        matrix33: fixed(1.0),
    }
}

/// Sizes here are at most 8192 (the viewer refuses larger screens), so these never clip.
fn clamp16(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

fn clamp_i16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn rectangles_map_to_the_window_exactly_at_one_to_one_and_widened_when_scaled() {
        let one = Place {
            x: 5,
            y: 40,
            w: 100,
            h: 50,
        };
        assert_eq!(
            to_window(rect(10, 10, 20, 5), (100, 50), one),
            Some(rect(10, 10, 20, 5))
        );
        assert_eq!(
            to_window(rect(90, 40, 20, 20), (100, 50), one),
            Some(rect(90, 40, 10, 10))
        );
        let half = Place {
            w: 50,
            h: 25,
            ..one
        };
        // 10..30 × 10..15 at ½ is 5..15 × 5..7.5, widened a pixel each way.
        assert_eq!(
            to_window(rect(10, 10, 20, 5), (100, 50), half),
            Some(rect(4, 4, 12, 5))
        );
        assert_eq!(
            to_window(rect(0, 0, 100, 50), (100, 50), half),
            Some(rect(0, 0, 50, 25))
        );
        assert_eq!(to_window(rect(0, 0, 0, 5), (100, 50), one), None);
    }
}
