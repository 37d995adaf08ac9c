//! Input on Windows through `SendInput`, following the key model ([`tether_protocol::keys`])
//! as the X11 keyboard does: every key pressed and released in order, and nothing left held
//! when the session lets go ([`WinInput::release_all`], and on drop).
//!
//! Translate mode presses the virtual key (with its scan code) that types the keysym on the
//! layout of the window in front, when the modifiers now down select that character; where no
//! key does — a character the layout lacks, or one it has only with other modifiers than the
//! technician's — the character is typed as Unicode (`KEYEVENTF_UNICODE`), as X11 maps a spare
//! keycode. Physical mode presses the scan code at the technician's position. Text is typed
//! character by character, adding Shift where the layout needs it.
//!
//! Windows does not repeat injected keys: a key held repeats by the viewer's repeated downs,
//! which are passed on (X11 repeats held keys itself and drops them).

use super::Origin;
use super::gdi;
use super::inputdesk;
use super::keymap;
use super::send::{self, MouseEv, Stroke};
use crate::platform::{InputError, InputSink};
use std::sync::Arc;
use tether_protocol::keys::{self, KeyEvent, KeyMode};
use tether_protocol::session::{InputEvent, MouseButton};
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{
    INPUT, MOUSEEVENTF_ABSOLUTE, MOUSEEVENTF_HWHEEL, MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP,
    MOUSEEVENTF_MIDDLEDOWN, MOUSEEVENTF_MIDDLEUP, MOUSEEVENTF_MOVE, MOUSEEVENTF_RIGHTDOWN,
    MOUSEEVENTF_RIGHTUP, MOUSEEVENTF_VIRTUALDESK, MOUSEEVENTF_WHEEL,
};
use windows_sys::Win32::UI::WindowsAndMessaging::WHEEL_DELTA;

/// A key this session holds down, and what was sent to press it.
struct Held {
    keysym: u32,
    code: u16,
    mode: KeyMode,
    strokes: Vec<Stroke>,
    /// Its modifier bit (Shift 1, Ctrl 2, Alt 4), if it is one.
    modifier: u8,
}

/// How a character is typed.
#[derive(Debug, PartialEq, Eq)]
enum Typing {
    /// This key, with the modifiers now down.
    Key(Stroke),
    /// This key with Shift, which is not down.
    Shifted(Stroke),
    /// As Unicode (one or two UTF-16 units).
    Unicode(Vec<u16>),
}

/// The session's mouse and keyboard. Coordinates are the streamed display's (the one last
/// captured), offset by its origin on the virtual screen.
pub struct WinInput {
    origin: Arc<Origin>,
    held: Vec<Held>,
    buttons: Vec<MouseButton>,
}

/// Injects `inputs`; where Windows refuses them because input now goes to another desktop
/// (a UAC prompt, the sign-in screen), attaches to that one and injects the rest there.
fn deliver(inputs: &[INPUT]) -> Result<(), InputError> {
    match send::send(inputs) {
        Ok(()) => Ok(()),
        Err(p) if inputdesk::follow() => send::send(&inputs[p.sent.min(inputs.len())..])
            .map_err(|p| InputError::Failed(p.error.to_string())),
        Err(p) => Err(InputError::Failed(p.error.to_string())),
    }
}

fn downs(strokes: &[Stroke]) -> Vec<INPUT> {
    strokes.iter().map(|s| send::key_input(*s, false)).collect()
}

fn ups(strokes: &[Stroke]) -> Vec<INPUT> {
    strokes.iter().map(|s| send::key_input(*s, true)).collect()
}

fn button_flags(b: MouseButton) -> (u32, u32) {
    match b {
        MouseButton::Left => (MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP),
        MouseButton::Middle => (MOUSEEVENTF_MIDDLEDOWN, MOUSEEVENTF_MIDDLEUP),
        MouseButton::Right => (MOUSEEVENTF_RIGHTDOWN, MOUSEEVENTF_RIGHTUP),
    }
}

/// A virtual-screen coordinate `p` (from the virtual screen's edge) as SendInput's absolute
/// 0..=65535, rounded up so that Windows' mapping back (`n × size / 65536`, truncated or
/// rounded) lands on `p` itself.
pub fn normalise(p: i32, size: i32) -> i32 {
    if size <= 1 {
        return 0;
    }
    let p = i64::from(p.clamp(0, size - 1));
    let size = i64::from(size);
    ((p * 65536 + size - 1) / size).min(65535) as i32
}

fn same_key(h: &Held, ev: &KeyEvent) -> bool {
    match (h.mode, ev.mode) {
        (KeyMode::Physical, KeyMode::Physical) if ev.code != 0 => h.code == ev.code,
        _ => h.keysym == ev.keysym && h.mode == ev.mode,
    }
}

fn key_event(keysym: u32, down: bool) -> KeyEvent {
    KeyEvent {
        keysym,
        code: 0,
        down,
        mode: KeyMode::Translate,
    }
}

impl WinInput {
    pub fn new(origin: Arc<Origin>) -> Self {
        Self {
            origin,
            held: Vec::new(),
            buttons: Vec::new(),
        }
    }

    /// Shift (1), Ctrl (2) and Alt (4) as now down: held by this session or anyone.
    fn modifiers(&self) -> u8 {
        let mut m = self.held.iter().fold(0, |m, h| m | h.modifier);
        for (vk, bit) in [(keymap::SHIFT, 1), (keymap::CONTROL, 2), (keymap::ALT, 4)] {
            if send::is_down(vk) {
                m |= bit;
            }
        }
        m
    }

    /// How `c` is typed with the modifiers `held`; Shift may be added when `may_shift`.
    fn typing(c: char, held: u8, may_shift: bool) -> Typing {
        let mut buf = [0u16; 2];
        let units = c.encode_utf16(&mut buf);
        if let [unit] = units {
            let layout = send::layout();
            if let Some((vk, mods)) = send::vk_for_char(*unit, layout) {
                let ctrl_alt = mods & 6;
                // Ctrl+A is A with Ctrl down; a character that needs AltGr (Ctrl+Alt) needs both.
                if mods & !7 == 0 && (ctrl_alt == 0 || ctrl_alt == held & 6) {
                    let alphabetic = keys::case_pair(keys::keysym_for_char(c)).is_some();
                    let caps = alphabetic && send::is_toggled(keymap::CAPS_LOCK);
                    let need_shift = (mods & 1 != 0) ^ caps;
                    let stroke = Stroke::Vk {
                        vk,
                        scan: send::scan_for_vk(vk, layout),
                        extended: false,
                    };
                    if need_shift == (held & 1 != 0) {
                        return Typing::Key(stroke);
                    }
                    if may_shift && need_shift && held == 0 {
                        return Typing::Shifted(stroke);
                    }
                }
            }
        }
        Typing::Unicode(units.to_vec())
    }

    fn named_stroke(vk: keymap::Named) -> Stroke {
        Stroke::Vk {
            vk: vk.vk,
            scan: send::scan_for_vk(vk.vk, send::layout()),
            extended: vk.extended,
        }
    }

    /// What to send to press `ev`'s key, and its modifier bit.
    fn strokes_for(&self, ev: &KeyEvent) -> Result<(Vec<Stroke>, u8), InputError> {
        if ev.mode == KeyMode::Physical
            && ev.code != 0
            && let Some(s) = keymap::physical(ev.code)
        {
            // The virtual key the remote layout has at that position, as a keyboard would give.
            let s = match s {
                Stroke::Scan {
                    scan,
                    extended: false,
                } => match send::vk_for_scan(scan, send::layout()) {
                    Some(vk) => Stroke::Vk {
                        vk,
                        scan,
                        extended: false,
                    },
                    None => s,
                },
                s => s,
            };
            return Ok((vec![s], keymap::modifier_bit_of_code(ev.code)));
        }
        if let Some(named) = keymap::named(ev.keysym) {
            return Ok((
                vec![Self::named_stroke(named)],
                keymap::modifier_bit(named.vk),
            ));
        }
        let c = keys::char_for_keysym(ev.keysym).ok_or_else(|| {
            InputError::Failed(format!("no Windows key for keysym {:#x}", ev.keysym))
        })?;
        Ok(match Self::typing(c, self.modifiers(), false) {
            Typing::Key(s) | Typing::Shifted(s) => (vec![s], 0),
            Typing::Unicode(units) => (units.into_iter().map(Stroke::Unicode).collect(), 0),
        })
    }

    /// Applies one key event.
    pub fn key(&mut self, ev: &KeyEvent) -> Result<(), InputError> {
        if ev.down {
            if let Some(h) = self.held.iter().find(|h| same_key(h, ev)) {
                // The viewer's autorepeat: Windows does not repeat injected keys itself.
                return deliver(&downs(&h.strokes));
            }
            let (strokes, modifier) = self.strokes_for(ev)?;
            deliver(&downs(&strokes))?;
            tracing::debug!(keysym = ev.keysym, ?strokes, "key down");
            self.held.push(Held {
                keysym: ev.keysym,
                code: ev.code,
                mode: ev.mode,
                strokes,
                modifier,
            });
        } else if let Some(i) = self.held.iter().position(|h| same_key(h, ev)) {
            let h = self.held.remove(i);
            tracing::debug!(keysym = h.keysym, "key up");
            deliver(&ups(&h.strokes))?;
        }
        Ok(())
    }

    /// Types text exactly, character by character (newlines as Return), releasing each key.
    pub fn type_text(&mut self, text: &str) -> Result<(), InputError> {
        let mut inputs = Vec::new();
        for c in text.chars() {
            if c == '\r' {
                continue;
            }
            let keysym = keys::keysym_for_char(c);
            let typing = match keymap::named(keysym) {
                Some(named) => Typing::Key(Self::named_stroke(named)),
                None => Self::typing(c, self.modifiers(), true),
            };
            match typing {
                Typing::Key(s) => {
                    inputs.push(send::key_input(s, false));
                    inputs.push(send::key_input(s, true));
                }
                Typing::Shifted(s) => {
                    let shift = Self::named_stroke(keymap::Named {
                        vk: keymap::LEFT_SHIFT,
                        extended: false,
                    });
                    inputs.push(send::key_input(shift, false));
                    inputs.push(send::key_input(s, false));
                    inputs.push(send::key_input(s, true));
                    inputs.push(send::key_input(shift, true));
                }
                Typing::Unicode(units) => {
                    let strokes: Vec<Stroke> = units.into_iter().map(Stroke::Unicode).collect();
                    inputs.extend(downs(&strokes));
                    inputs.extend(ups(&strokes));
                }
            }
        }
        // One call per few characters: SendInput keeps each call's events together.
        for chunk in inputs.chunks(256) {
            deliver(chunk)?;
        }
        Ok(())
    }

    /// Releases every key (last pressed first) and mouse button this session holds.
    pub fn release_all(&mut self) -> Result<(), InputError> {
        let mut inputs = Vec::new();
        while let Some(h) = self.held.pop() {
            inputs.extend(ups(&h.strokes));
        }
        for b in self.buttons.drain(..) {
            inputs.push(send::mouse_input(MouseEv {
                dx: 0,
                dy: 0,
                data: 0,
                flags: button_flags(b).1,
            }));
        }
        deliver(&inputs)
    }

    fn move_to(&self, x: i32, y: i32) -> Result<(), InputError> {
        let (ox, oy) = self.origin.get();
        let vs = gdi::virtual_screen();
        let ev = MouseEv {
            dx: normalise(x.saturating_add(ox) - vs.left, vs.width),
            dy: normalise(y.saturating_add(oy) - vs.top, vs.height),
            data: 0,
            flags: MOUSEEVENTF_MOVE | MOUSEEVENTF_ABSOLUTE | MOUSEEVENTF_VIRTUALDESK,
        };
        deliver(&[send::mouse_input(ev)])
    }

    fn button(&mut self, b: MouseButton, down: bool) -> Result<(), InputError> {
        let (d, u) = button_flags(b);
        self.buttons.retain(|&h| h != b);
        if down {
            self.buttons.push(b);
        }
        let ev = MouseEv {
            dx: 0,
            dy: 0,
            data: 0,
            flags: if down { d } else { u },
        };
        deliver(&[send::mouse_input(ev)])
    }

    fn scroll(&self, dx: i32, dy: i32) -> Result<(), InputError> {
        let delta = WHEEL_DELTA as i32;
        let mut inputs = Vec::new();
        if dy != 0 {
            // Positive dy scrolls down; a positive wheel turns away from the user (up).
            inputs.push(send::mouse_input(MouseEv {
                dx: 0,
                dy: 0,
                data: dy.saturating_mul(-delta),
                flags: MOUSEEVENTF_WHEEL,
            }));
        }
        if dx != 0 {
            inputs.push(send::mouse_input(MouseEv {
                dx: 0,
                dy: 0,
                data: dx.saturating_mul(delta),
                flags: MOUSEEVENTF_HWHEEL,
            }));
        }
        deliver(&inputs)
    }
}

impl InputSink for WinInput {
    fn release_if_held(&mut self) {
        if !self.held.is_empty() || !self.buttons.is_empty() {
            tracing::info!("viewer silent with keys held: releasing them");
            if let Err(e) = self.release_all() {
                tracing::warn!("releasing held keys: {e}");
            }
        }
    }

    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        match event {
            InputEvent::MouseMove { x, y } => self.move_to(*x, *y),
            InputEvent::Button { button, down } => self.button(*button, *down),
            InputEvent::Click { x, y, button } => {
                self.move_to(*x, *y)?;
                self.button(*button, true)?;
                self.button(*button, false)
            }
            InputEvent::Scroll { dx, dy } => self.scroll(*dx, *dy),
            InputEvent::Key { key, down } => {
                let ks = key
                    .keysym()
                    .ok_or_else(|| InputError::Failed("unknown key".into()))?;
                self.key(&key_event(ks, *down))
            }
            InputEvent::Text(t) => self.type_text(t),
            InputEvent::Combo(keys) => {
                let syms: Vec<u32> = keys.iter().filter_map(|k| k.keysym()).collect();
                for &s in &syms {
                    self.key(&key_event(s, true))?;
                }
                for &s in syms.iter().rev() {
                    self.key(&key_event(s, false))?;
                }
                Ok(())
            }
            InputEvent::KeyEvent(ev) => self.key(ev),
            InputEvent::ReleaseKeys => self.release_all(),
        }
    }
}

impl Drop for WinInput {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!("releasing held keys: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn absolute_positions_map_back_to_the_pixel() {
        for size in [640, 1024, 1080, 1366, 1920, 2560, 3840, 7680] {
            for p in 0..size {
                let n = i64::from(normalise(p, size));
                assert!((0..=65535).contains(&n));
                // Truncating and rounding mappings both land on p.
                assert_eq!(n * i64::from(size) / 65536, i64::from(p), "{p} of {size}");
                assert_eq!(
                    (n * i64::from(size) + 32768) / 65536,
                    i64::from(p),
                    "{p} of {size}"
                );
            }
        }
    }
}
