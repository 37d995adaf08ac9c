//! Keys on an X11 desktop through XTEST, as the key model ([`tether_protocol::keys`]) says:
//! one connection per session, every key pressed and released in order, and nothing left held
//! when the session lets go ([`Keyboard::release_all`], and on drop).
//!
//! Translate mode finds a keycode whose current level (Shift, Caps Lock) produces the keysym
//! in the remote keymap; where none does — a character the remote layout lacks, or one it has
//! only on another level than the technician's modifiers select — it maps a spare keycode (one
//! with no symbols) to the keysym, as x11vnc and xdotool do. Such keycodes stay mapped when
//! the session ends: an X client reads the keymap only when it handles the key event, which
//! can be after the session has gone, and a restored keycode would then type nothing. They are
//! reused, least recently used first, once every spare keycode has been taken. Physical mode presses the key at the technician's position
//! (evdev code + 8, the X keycode on every evdev/libinput server).

use tether_protocol::keys::{self, KeyEvent, KeyMode};
use thiserror::Error;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{
    ConnectionExt as _, KEY_PRESS_EVENT, KEY_RELEASE_EVENT, KeyButMask, Keycode, Keysym, Window,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

#[derive(Debug, Error)]
pub enum KeyboardError {
    #[error("cannot open the X display for keyboard input (is DISPLAY set?): {0}")]
    Connect(String),
    #[error("the X server has no XTEST extension, so keys cannot be typed")]
    NoXtest,
    #[error("X keyboard request failed: {0}")]
    X(String),
    #[error("no key can type keysym {0:#x} (the keymap has no spare keycode)")]
    NoKeycode(u32),
}

fn x<E: std::fmt::Display>(e: E) -> KeyboardError {
    KeyboardError::X(e.to_string())
}

/// A key this session holds down.
struct Held {
    keysym: u32,
    code: u16,
    mode: KeyMode,
    keycode: Keycode,
}

pub struct Keyboard {
    conn: RustConnection,
    root: Window,
    min: Keycode,
    max: Keycode,
    held: Vec<Held>,
}

/// Spare keycodes this agent mapped to a keysym, least recently used first (all sessions).
static REMAPPED: std::sync::Mutex<Vec<(Keycode, Keysym)>> = std::sync::Mutex::new(Vec::new());

/// The keyboard mapping at one moment: keysyms per keycode, core protocol columns (group 1
/// level 1, group 1 level 2, group 2 …).
struct Mapping {
    min: Keycode,
    per: usize,
    syms: Vec<Keysym>,
}

impl Mapping {
    fn columns(&self, kc: Keycode) -> &[Keysym] {
        let i = usize::from(kc - self.min) * self.per;
        self.syms.get(i..i + self.per).unwrap_or(&[])
    }

    /// The two levels of group 1 as the core protocol reads them: a lone letter stands for
    /// its lower and upper case, a lone other symbol for both levels.
    fn levels(&self, kc: Keycode) -> (Keysym, Keysym) {
        let cols = self.columns(kc);
        let first = cols.first().copied().unwrap_or(0);
        let second = cols.get(1).copied().unwrap_or(0);
        if second != 0 {
            return (first, second);
        }
        match keys::case_pair(first) {
            Some((lower, upper)) if lower == first => (lower, upper),
            _ => (first, first),
        }
    }

    fn is_spare(&self, kc: Keycode) -> bool {
        self.columns(kc).iter().all(|&s| s == 0)
    }
}

impl Keyboard {
    pub fn open() -> Result<Self, KeyboardError> {
        let (conn, screen) =
            x11rb::connect(None).map_err(|e| KeyboardError::Connect(e.to_string()))?;
        if conn
            .extension_information(x11rb::protocol::xtest::X11_EXTENSION_NAME)
            .map_err(x)?
            .is_none()
        {
            return Err(KeyboardError::NoXtest);
        }
        let setup = conn.setup();
        let root = setup
            .roots
            .get(screen)
            .map(|s| s.root)
            .ok_or_else(|| KeyboardError::Connect(format!("no screen {screen}")))?;
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        Ok(Self {
            conn,
            root,
            min,
            max,
            held: Vec::new(),
        })
    }

    /// Applies one key event; returns once the X server has processed it.
    pub fn apply(&mut self, ev: &KeyEvent) -> Result<(), KeyboardError> {
        if ev.down {
            self.press(ev)?;
        } else {
            self.release(ev)?;
        }
        self.sync()
    }

    /// Types text exactly, character by character (newlines as Return), releasing each key.
    pub fn type_text(&mut self, text: &str) -> Result<(), KeyboardError> {
        for c in text.chars() {
            if c == '\r' {
                continue;
            }
            let ev = KeyEvent {
                keysym: keys::keysym_for_char(c),
                code: 0,
                down: true,
                mode: KeyMode::Translate,
            };
            self.press(&ev)?;
            self.release(&KeyEvent { down: false, ..ev })?;
        }
        self.sync()
    }

    /// Whether this session holds any key down.
    pub fn any_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Releases every key this session holds, last pressed first.
    pub fn release_all(&mut self) -> Result<(), KeyboardError> {
        while let Some(h) = self.held.pop() {
            self.fake(KEY_RELEASE_EVENT, h.keycode)?;
        }
        self.sync()
    }

    fn press(&mut self, ev: &KeyEvent) -> Result<(), KeyboardError> {
        // A held key repeats on the remote by its own autorepeat, as a local key does; the
        // viewer's repeats add nothing.
        if self.held.iter().any(|h| same_key(h, ev)) {
            return Ok(());
        }
        let keycode = match ev.mode {
            KeyMode::Physical => {
                let kc = u16::from(self.min).max(ev.code.saturating_add(8));
                match u8::try_from(kc) {
                    Ok(kc) if ev.code != 0 && kc <= self.max => kc,
                    // No position known: fall back to the keysym.
                    _ => self.keycode_for(ev.keysym)?,
                }
            }
            KeyMode::Translate => self.keycode_for(ev.keysym)?,
        };
        self.fake(KEY_PRESS_EVENT, keycode)?;
        tracing::debug!(keysym = ev.keysym, keycode, "key down");
        self.held.push(Held {
            keysym: ev.keysym,
            code: ev.code,
            mode: ev.mode,
            keycode,
        });
        Ok(())
    }

    fn release(&mut self, ev: &KeyEvent) -> Result<(), KeyboardError> {
        if let Some(i) = self.held.iter().position(|h| same_key(h, ev)) {
            let h = self.held.remove(i);
            tracing::debug!(keysym = h.keysym, keycode = h.keycode, "key up");
            self.fake(KEY_RELEASE_EVENT, h.keycode)?;
        }
        Ok(())
    }

    fn mapping(&self) -> Result<Mapping, KeyboardError> {
        let count = self.max - self.min + 1;
        let reply = self
            .conn
            .get_keyboard_mapping(self.min, count)
            .map_err(x)?
            .reply()
            .map_err(x)?;
        Ok(Mapping {
            min: self.min,
            per: usize::from(reply.keysyms_per_keycode).max(1),
            syms: reply.keysyms,
        })
    }

    /// A keycode that types `keysym` with the modifiers now in effect, else a spare keycode
    /// mapped to it.
    fn keycode_for(&mut self, keysym: u32) -> Result<Keycode, KeyboardError> {
        let map = self.mapping()?;
        let mask = self
            .conn
            .query_pointer(self.root)
            .map_err(x)?
            .reply()
            .map_err(x)?
            .mask;
        let shift = mask.contains(KeyButMask::SHIFT);
        let caps = mask.contains(KeyButMask::LOCK);
        let character = keys::char_for_keysym(keysym).is_some();
        let mut any_level = None;
        for kc in self.min..=self.max {
            let (l1, l2) = map.levels(kc);
            if l1 != keysym && l2 != keysym {
                continue;
            }
            if !character {
                // Named keys (F4, Return, Shift) are the same key at every level: Shift+F4 is
                // F4 with Shift held.
                if l1 == keysym {
                    return Ok(kc);
                }
                any_level.get_or_insert(kc);
                continue;
            }
            let alphabetic = keys::case_pair(l1) == Some((l1, l2));
            let level2 = if alphabetic { shift ^ caps } else { shift };
            if (if level2 { l2 } else { l1 }) == keysym {
                return Ok(kc);
            }
        }
        if let Some(kc) = any_level {
            return Ok(kc);
        }
        self.spare_for(&map, keysym)
    }

    /// Maps a spare keycode to `keysym` on both levels (so it types the same with or without
    /// Shift): one with no symbols, else the least recently used one this agent mapped before.
    fn spare_for(&mut self, map: &Mapping, keysym: u32) -> Result<Keycode, KeyboardError> {
        let mut remapped = REMAPPED.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = (self.min..=self.max)
            .rev()
            .find(|&kc| map.is_spare(kc) && !remapped.iter().any(|&(k, _)| k == kc));
        let kc = match fresh {
            Some(kc) => kc,
            None => {
                let held: Vec<Keycode> = self.held.iter().map(|h| h.keycode).collect();
                let i = remapped
                    .iter()
                    .position(|(k, _)| !held.contains(k))
                    .ok_or(KeyboardError::NoKeycode(keysym))?;
                remapped.remove(i).0
            }
        };
        let mut syms = vec![0; map.per];
        syms[0] = keysym;
        if let Some(s) = syms.get_mut(1) {
            *s = keysym;
        }
        self.conn
            .change_keyboard_mapping(1, kc, map.per as u8, &syms)
            .map_err(x)?;
        remapped.retain(|&(k, _)| k != kc);
        remapped.push((kc, keysym));
        Ok(kc)
    }

    fn fake(&self, kind: u8, keycode: Keycode) -> Result<(), KeyboardError> {
        self.conn
            .xtest_fake_input(kind, keycode, 0, self.root, 0, 0, 0)
            .map_err(x)?;
        Ok(())
    }

    /// Waits until the server has processed everything sent so far.
    fn sync(&self) -> Result<(), KeyboardError> {
        self.conn
            .get_input_focus()
            .map_err(x)?
            .reply()
            .map(|_| ())
            .map_err(x)
    }
}

fn same_key(h: &Held, ev: &KeyEvent) -> bool {
    match (h.mode, ev.mode) {
        (KeyMode::Physical, KeyMode::Physical) if ev.code != 0 => h.code == ev.code,
        _ => h.keysym == ev.keysym && h.mode == ev.mode,
    }
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!("releasing held keys: {e}");
        }
        let _ = self.conn.flush();
    }
}
