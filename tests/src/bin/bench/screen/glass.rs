//! Key to pixels *glass to glass*: through a real viewer window, for Tether's viewer and the
//! peer's alike.
//!
//! The viewer runs on an Xvfb of its own (the technician's screen), showing the remote screen
//! at 1:1. This process talks X to that display: it finds where the remote terminal appears in
//! it (the remote screen's top-left corner, terminal included, matched but for a painted
//! pointer), then per
//! sample waits until the viewer has drawn nothing for [`QUIET`], copies the terminal's area,
//! presses and releases a letter through XTEST (as a keyboard would: the focused viewer window
//! gets it, forwards it, the remote terminal echoes it, the remote side sends the change, the
//! viewer draws it) and waits for the DAMAGE event after which that area differs from the copy.
//! The sample is from just before the key press to that event's arrival.
//!
//! Included: everything a person waits for, except the display's own scan-out. Drawing that
//! does not change the terminal's pixels (Tether's status line, once a second) is seen, checked
//! and passed over.

use super::*;
use std::os::fd::AsFd as _;
use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

/// Nothing drawn on the viewer's display for this long before each key.
const QUIET: Duration = Duration::from_millis(300);
/// A key whose echo has not been drawn by then is counted as lost.
const LOST: Duration = Duration::from_secs(3);

/// An area of a screen.
#[derive(Clone, Copy, Debug)]
pub struct Area {
    x: i16,
    y: i16,
    w: u16,
    h: u16,
}

struct Display {
    conn: RustConnection,
    root: xproto::Window,
}

impl Display {
    fn open(name: &str) -> Result<Self> {
        let (conn, screen) =
            x11rb::connect(Some(name)).with_context(|| format!("X display {name}"))?;
        let root = conn.setup().roots[screen].root;
        Ok(Self { conn, root })
    }

    /// The area's pixels as 0xRRGGBB (the 24-bit visual's unused byte cleared).
    fn pixels(&self, a: Area) -> Result<Vec<u32>> {
        let reply = self
            .conn
            .get_image(
                xproto::ImageFormat::Z_PIXMAP,
                self.root,
                a.x,
                a.y,
                a.w,
                a.h,
                !0,
            )?
            .reply()?;
        anyhow::ensure!(
            reply.data.len() == usize::from(a.w) * usize::from(a.h) * 4,
            "unexpected image format (depth {})",
            reply.depth
        );
        Ok(reply
            .data
            .chunks_exact(4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect())
    }

    /// The window's area on its screen.
    fn window_area(&self, window: xproto::Window) -> Result<Area> {
        let g = self.conn.get_geometry(window)?.reply()?;
        let at = self
            .conn
            .translate_coordinates(window, self.root, 0, 0)?
            .reply()?;
        Ok(Area {
            x: at.dst_x,
            y: at.dst_y,
            w: g.width,
            h: g.height,
        })
    }

    /// The next event, or none within `timeout`.
    fn event(&self, timeout: Duration) -> Result<Option<Event>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.conn.poll_for_event()? {
                return Ok(Some(ev));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let fd = self.conn.stream().as_fd();
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let t = rustix::event::Timespec::try_from(left).ok();
            let _ = rustix::event::poll(&mut fds, t.as_ref());
        }
    }

    /// The keycode that types `keysym` without modifiers.
    fn keycode(&self, keysym: u32) -> Result<u8> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = self
            .conn
            .get_keyboard_mapping(min, max - min + 1)?
            .reply()?;
        let per = usize::from(map.keysyms_per_keycode).max(1);
        map.keysyms
            .chunks(per)
            .position(|syms| syms.first() == Some(&keysym))
            .map(|i| min + i as u8)
            .with_context(|| format!("no key types keysym {keysym:#x}"))
    }
}

/// Where `needle` (`nw` wide) occurs in `hay` (`hw` wide) with at most `budget` pixels
/// different (a pointer the viewer paints over the picture); the first such place.
fn find(
    hay: &[u32],
    hw: usize,
    needle: &[u32],
    nw: usize,
    budget: usize,
) -> Option<(usize, usize)> {
    let (hh, nh) = (hay.len() / hw.max(1), needle.len() / nw.max(1));
    if nw > hw || nh > hh || nw == 0 {
        return None;
    }
    for y in 0..=hh - nh {
        'at: for x in 0..=hw - nw {
            let mut off = 0;
            for r in 0..nh {
                let (a, b) = (
                    &hay[(y + r) * hw + x..(y + r) * hw + x + nw],
                    &needle[r * nw..(r + 1) * nw],
                );
                if a != b {
                    off += a.iter().zip(b).filter(|(p, q)| p != q).count();
                    if off > budget {
                        continue 'at;
                    }
                }
            }
            return Some((x, y));
        }
    }
    None
}

/// Where the viewer on `local` shows the remote window `term` (an X window id on `remote`):
/// found while the remote screen is still and the viewer's picture exact.
pub fn locate(local: &str, remote: &str, term: &str) -> Result<Area> {
    let here = Display::open(local)?;
    let there = Display::open(remote)?;
    let term: xproto::Window = term.parse().context("window id")?;

    // Where the terminal shows here: the remote screen from its top-left corner down to the
    // terminal's bottom-right, found as it is in the viewer's picture.
    let t = there.window_area(term)?;
    let corner = Area {
        x: 0,
        y: 0,
        w: (t.x.max(0) as u16).saturating_add(t.w).min(640),
        h: (t.y.max(0) as u16).saturating_add(t.h).min(480),
    };
    let needle = there.pixels(corner)?;
    let geo = here.conn.get_geometry(here.root)?.reply()?;
    let screen = Area {
        x: 0,
        y: 0,
        w: geo.width,
        h: geo.height,
    };
    let hay = here.pixels(screen)?;
    let (ox, oy) = find(
        &hay,
        usize::from(screen.w),
        &needle,
        usize::from(corner.w),
        32 * 32,
    )
    .context("the viewer does not show the remote screen at 1:1")?;
    Ok(Area {
        x: ox as i16 + t.x,
        y: oy as i16 + t.y,
        w: t.w.min(corner.w - t.x.max(0) as u16),
        h: t.h.min(corner.h - t.y.max(0) as u16),
    })
}

/// Pixels that changed by more than this in some channel count as drawn (a typed letter changes
/// dozens by ~255; a lossy picture's noise far less).
const DRAWN: u32 = 96;
/// How many such pixels make a change.
const DRAWN_PIXELS: usize = 8;

/// Whether `after` shows something drawn over `before` (see [`DRAWN`]).
fn drawn(before: &[u32], after: &[u32]) -> bool {
    let far = |a: u32, b: u32| {
        (0..3).any(|i| ((a >> (8 * i)) & 0xff).abs_diff((b >> (8 * i)) & 0xff) > DRAWN)
    };
    before.len() != after.len()
        || before
            .iter()
            .zip(after)
            .filter(|(a, b)| far(**a, **b))
            .nth(DRAWN_PIXELS - 1)
            .is_some()
}

/// Glass-to-glass key-to-pixels samples (ms): `samples` letters pressed on the `local` display,
/// whose focused viewer window shows the remote terminal at `area` ([`locate`]); `busy`:
/// another part of the remote screen keeps changing. Keys whose echo never shows are left out
/// (printed).
pub fn key_to_pixels(local: &str, area: Area, samples: u32, busy: bool) -> Result<Vec<f64>> {
    let here = Display::open(local)?;
    here.conn
        .damage_query_version(1, 1)?
        .reply()
        .context("DAMAGE")?;
    let damage = here.conn.generate_id()?;
    here.conn
        .damage_create(damage, here.root, damage::ReportLevel::NON_EMPTY)?;
    here.conn.flush()?;
    // Re-arms the notification: the next drawing is reported again.
    let rearm = || -> Result<()> {
        here.conn
            .damage_subtract(damage, x11rb::NONE, x11rb::NONE)?;
        here.conn.flush()?;
        Ok(())
    };

    let mut out = vec![];
    let mut lost = 0;
    for i in 0..samples {
        // Quiet first (bounded: a viewer that never stops drawing is measured anyway; with
        // the remote screen `busy` it never is).
        let settle = Instant::now() + Duration::from_millis(if busy { 500 } else { 5000 });
        while Instant::now() < settle {
            match here.event(QUIET)? {
                Some(Event::DamageNotify(_)) => rearm()?,
                Some(_) => {}
                None => break,
            }
        }
        let before = here.pixels(area)?;
        let key = here.keycode(u32::from(b'a') + i % 26)?;
        let t0 = Instant::now();
        for kind in [xproto::KEY_PRESS_EVENT, xproto::KEY_RELEASE_EVENT] {
            here.conn
                .xtest_fake_input(kind, key, x11rb::CURRENT_TIME, here.root, 0, 0, 0)?;
        }
        here.conn.flush()?;
        let end = t0 + LOST;
        let mut shown = None;
        while shown.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            match here.event(left)? {
                Some(Event::DamageNotify(_)) => {
                    let at = t0.elapsed();
                    rearm()?;
                    if drawn(&before, &here.pixels(area)?) {
                        shown = Some(at);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        match shown {
            Some(d) => out.push(d.as_secs_f64() * 1000.0),
            None => lost += 1,
        }
    }
    if lost > 0 {
        eprintln!("    glass to glass: {lost} of {samples} keys never showed within {LOST:?}");
    }
    Ok(out)
}
