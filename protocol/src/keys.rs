//! The key model of remote control: keys travel as events (down and up), not as text, each
//! with its X11 keysym (what the key means: the technician's layout decides) and its physical
//! position (a Linux evdev code, as USB HID positions map onto it). The agent types the keysym
//! in translate mode and the position in physical mode ([`KeyMode`]); characters no key
//! produces (IME, emoji) still go as text.
//!
//! Keysyms are the X11 keysym space: Latin-1 characters are their own code, other Unicode
//! characters `0x0100_0000 + code point`, and named keys (`Return`, `Shift_L`, `F1` …) have
//! fixed codes in `0xff00..=0xffff`. The same numbers serve every platform; a Windows or
//! Wayland agent maps them to its own key codes.

use serde::{Deserialize, Serialize};

/// How the agent types a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KeyMode {
    /// The character the technician's layout produced arrives, whatever the remote layout
    /// (the agent finds, or temporarily makes, a key that produces the keysym).
    #[default]
    Translate,
    /// The key at the same place on the keyboard is pressed; the remote layout decides.
    Physical,
}

/// A key going down or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    /// X11 keysym ([`keysym_for_char`], [`sym`]).
    pub keysym: u32,
    /// Linux evdev code of the physical key, 0 when unknown.
    pub code: u16,
    pub down: bool,
    pub mode: KeyMode,
}

/// Named keysyms (X11 `keysymdef.h`).
pub mod sym {
    pub const BACKSPACE: u32 = 0xff08;
    pub const TAB: u32 = 0xff09;
    pub const RETURN: u32 = 0xff0d;
    pub const PAUSE: u32 = 0xff13;
    pub const SCROLL_LOCK: u32 = 0xff14;
    pub const ESCAPE: u32 = 0xff1b;
    pub const HOME: u32 = 0xff50;
    pub const LEFT: u32 = 0xff51;
    pub const UP: u32 = 0xff52;
    pub const RIGHT: u32 = 0xff53;
    pub const DOWN: u32 = 0xff54;
    pub const PAGE_UP: u32 = 0xff55;
    pub const PAGE_DOWN: u32 = 0xff56;
    pub const END: u32 = 0xff57;
    pub const PRINT: u32 = 0xff61;
    pub const INSERT: u32 = 0xff63;
    pub const MENU: u32 = 0xff67;
    pub const HELP: u32 = 0xff6a;
    pub const NUM_LOCK: u32 = 0xff7f;
    pub const KP_ENTER: u32 = 0xff8d;
    /// `F1`; `Fn` is `F1 + n - 1` up to F35.
    pub const F1: u32 = 0xffbe;
    pub const SHIFT_L: u32 = 0xffe1;
    pub const SHIFT_R: u32 = 0xffe2;
    pub const CONTROL_L: u32 = 0xffe3;
    pub const CONTROL_R: u32 = 0xffe4;
    pub const CAPS_LOCK: u32 = 0xffe5;
    pub const META_L: u32 = 0xffe7;
    pub const ALT_L: u32 = 0xffe9;
    pub const ALT_R: u32 = 0xffea;
    pub const SUPER_L: u32 = 0xffeb;
    pub const SUPER_R: u32 = 0xffec;
    pub const DELETE: u32 = 0xffff;
    pub const SPACE: u32 = 0x20;
}

/// `F<n>` (1–35).
pub fn function_key(n: u8) -> Option<u32> {
    (1..=35).contains(&n).then(|| sym::F1 + u32::from(n) - 1)
}

/// The keysym of a character: Latin-1 printable characters are their own keysym, every other
/// character `0x0100_0000 + code point`. Control characters have the keys that type them.
pub fn keysym_for_char(c: char) -> u32 {
    match c {
        '\n' | '\r' => sym::RETURN,
        '\t' => sym::TAB,
        '\u{8}' => sym::BACKSPACE,
        '\u{1b}' => sym::ESCAPE,
        '\u{7f}' => sym::DELETE,
        ' '..='~' | '\u{a0}'..='\u{ff}' => c as u32,
        c => 0x0100_0000 + c as u32,
    }
}

/// The character a keysym types, if it is a character key (named keys such as `Return` are not).
pub fn char_for_keysym(keysym: u32) -> Option<char> {
    match keysym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        0x0100_0100..=0x0110_ffff => char::from_u32(keysym - 0x0100_0000),
        _ => None,
    }
}

/// Whether the keysym is a modifier key (Shift, Control, Alt, Super, Meta, Caps Lock …).
pub fn is_modifier(keysym: u32) -> bool {
    // Shift_L .. Hyper_R, and ISO_Level3_Shift / ISO_Level5_Shift and friends (0xfe01..0xfe13).
    (0xffe1..=0xffee).contains(&keysym) || (0xfe01..=0xfe13).contains(&keysym)
}

/// Lower and upper case of a character keysym, when it has both (`a`/`A`, `é`/`É`).
pub fn case_pair(keysym: u32) -> Option<(u32, u32)> {
    let c = char_for_keysym(keysym)?;
    let mut lower = c.to_lowercase();
    let mut upper = c.to_uppercase();
    let (l, u) = (lower.next()?, upper.next()?);
    if lower.next().is_some() || upper.next().is_some() || l == u {
        return None;
    }
    Some((keysym_for_char(l), keysym_for_char(u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_and_keysyms_round_trip() {
        for c in (' '..='~').chain(['é', 'ß', '€', 'Ω', '😀', 'ÿ']) {
            assert_eq!(char_for_keysym(keysym_for_char(c)), Some(c), "{c:?}");
        }
        assert_eq!(keysym_for_char('a'), 0x61);
        assert_eq!(keysym_for_char('€'), 0x0100_20ac);
        assert_eq!(keysym_for_char('\n'), sym::RETURN);
        assert_eq!(char_for_keysym(sym::RETURN), None);
        assert_eq!(char_for_keysym(0x0100_0000 + 0xd800), None);
    }

    #[test]
    fn modifiers_function_keys_and_case() {
        assert!(is_modifier(sym::SHIFT_L) && is_modifier(sym::CAPS_LOCK));
        assert!(is_modifier(0xfe03)); // ISO_Level3_Shift (AltGr)
        assert!(!is_modifier(sym::RETURN) && !is_modifier(0x61));
        assert_eq!(function_key(1), Some(0xffbe));
        assert_eq!(function_key(24), Some(0xffd5));
        assert_eq!(function_key(0), None);
        assert_eq!(case_pair(0x61), Some((0x61, 0x41)));
        assert_eq!(case_pair(0x41), Some((0x61, 0x41)));
        assert_eq!(case_pair(0xe9), Some((0xe9, 0xc9)));
        assert_eq!(case_pair(0x31), None);
        assert_eq!(case_pair(keysym_for_char('ß')), None);
    }
}
