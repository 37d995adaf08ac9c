//! The US keyboard layout as a table: which evdev key (and whether Shift) types a keysym.
//!
//! Backends that press keys by position (the wlroots virtual keyboard, which takes evdev codes
//! plus a keymap we upload) need this to type keysyms in translate mode
//! ([`tether_protocol::keys::KeyMode::Translate`]). The layout is the one in
//! [`US_XKB_KEYMAP`], so what the table says a key types is what the compositor makes of it.
//! Keysyms the layout has no key for (`é`, `€`, emoji) are `None`: the caller reports them.

use tether_protocol::keys::sym;

/// The XKB keymap the table describes (evdev keycodes, `pc+us+inet(evdev)` symbols), in the
/// text form `zwp_virtual_keyboard_v1.keymap` takes (sent with a trailing NUL).
pub const US_XKB_KEYMAP: &str = "xkb_keymap {\n xkb_keycodes { include \"evdev+aliases(qwerty)\" };\n xkb_types { include \"complete\" };\n xkb_compat { include \"complete\" };\n xkb_symbols { include \"pc+us+inet(evdev)\" };\n};\n";

/// Linux evdev key and button codes (`linux/input-event-codes.h`) used here.
pub mod evdev {
    pub const KEY_ESC: u16 = 1;
    pub const KEY_1: u16 = 2;
    pub const KEY_2: u16 = 3;
    pub const KEY_0: u16 = 11;
    pub const KEY_MINUS: u16 = 12;
    pub const KEY_EQUAL: u16 = 13;
    pub const KEY_BACKSPACE: u16 = 14;
    pub const KEY_TAB: u16 = 15;
    pub const KEY_Q: u16 = 16;
    pub const KEY_LEFTBRACE: u16 = 26;
    pub const KEY_RIGHTBRACE: u16 = 27;
    pub const KEY_ENTER: u16 = 28;
    pub const KEY_LEFTCTRL: u16 = 29;
    pub const KEY_A: u16 = 30;
    pub const KEY_SEMICOLON: u16 = 39;
    pub const KEY_APOSTROPHE: u16 = 40;
    pub const KEY_GRAVE: u16 = 41;
    pub const KEY_LEFTSHIFT: u16 = 42;
    pub const KEY_BACKSLASH: u16 = 43;
    pub const KEY_Z: u16 = 44;
    pub const KEY_COMMA: u16 = 51;
    pub const KEY_DOT: u16 = 52;
    pub const KEY_SLASH: u16 = 53;
    pub const KEY_RIGHTSHIFT: u16 = 54;
    pub const KEY_LEFTALT: u16 = 56;
    pub const KEY_SPACE: u16 = 57;
    pub const KEY_CAPSLOCK: u16 = 58;
    pub const KEY_F1: u16 = 59;
    pub const KEY_F10: u16 = 68;
    pub const KEY_NUMLOCK: u16 = 69;
    pub const KEY_SCROLLLOCK: u16 = 70;
    pub const KEY_F11: u16 = 87;
    pub const KEY_F12: u16 = 88;
    pub const KEY_KPENTER: u16 = 96;
    pub const KEY_RIGHTCTRL: u16 = 97;
    pub const KEY_SYSRQ: u16 = 99;
    pub const KEY_RIGHTALT: u16 = 100;
    pub const KEY_HOME: u16 = 102;
    pub const KEY_UP: u16 = 103;
    pub const KEY_PAGEUP: u16 = 104;
    pub const KEY_LEFT: u16 = 105;
    pub const KEY_RIGHT: u16 = 106;
    pub const KEY_END: u16 = 107;
    pub const KEY_DOWN: u16 = 108;
    pub const KEY_PAGEDOWN: u16 = 109;
    pub const KEY_INSERT: u16 = 110;
    pub const KEY_DELETE: u16 = 111;
    pub const KEY_PAUSE: u16 = 119;
    pub const KEY_LEFTMETA: u16 = 125;
    pub const KEY_RIGHTMETA: u16 = 126;
    pub const KEY_COMPOSE: u16 = 127;
    pub const BTN_LEFT: u32 = 0x110;
    pub const BTN_RIGHT: u32 = 0x111;
    pub const BTN_MIDDLE: u32 = 0x112;
}

/// A key of the US layout: its evdev code, and whether Shift must be down to type the keysym.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsKey {
    pub code: u16,
    pub shift: bool,
}

/// The printable rows of the US layout: unshifted characters, shifted ones, first key's code.
const ROWS: &[(&str, &str, u16)] = &[
    ("`", "~", evdev::KEY_GRAVE),
    ("1234567890-=", "!@#$%^&*()_+", evdev::KEY_1),
    ("qwertyuiop[]", "QWERTYUIOP{}", evdev::KEY_Q),
    ("asdfghjkl;'", "ASDFGHJKL:\"", evdev::KEY_A),
    ("\\", "|", evdev::KEY_BACKSLASH),
    ("zxcvbnm,./", "ZXCVBNM<>?", evdev::KEY_Z),
    (" ", "", evdev::KEY_SPACE),
];

/// The key that types `keysym` on the US layout, or `None` when no key of it does.
pub fn us_key(keysym: u32) -> Option<UsKey> {
    let plain = |code| Some(UsKey { code, shift: false });
    if let Some(code) = named_key(keysym) {
        return plain(code);
    }
    // Only ASCII is on this layout: every other keysym (Latin-1 above 0x7f, Unicode) has no key.
    let c = char::from_u32(keysym).filter(|c| c.is_ascii_graphic() || *c == ' ')?;
    ROWS.iter().find_map(|(lower, upper, first)| {
        let at = |s: &str| {
            s.chars()
                .position(|x| x == c)
                .and_then(|i| u16::try_from(i).ok())
        };
        at(lower)
            .map(|i| UsKey {
                code: first + i,
                shift: false,
            })
            .or_else(|| {
                at(upper).map(|i| UsKey {
                    code: first + i,
                    shift: true,
                })
            })
    })
}

/// Named (non-character) keys: editing, navigation, function keys and modifiers.
fn named_key(keysym: u32) -> Option<u16> {
    use evdev::*;
    Some(match keysym {
        sym::RETURN => KEY_ENTER,
        sym::KP_ENTER => KEY_KPENTER,
        sym::TAB => KEY_TAB,
        sym::BACKSPACE => KEY_BACKSPACE,
        sym::ESCAPE => KEY_ESC,
        sym::DELETE => KEY_DELETE,
        sym::INSERT => KEY_INSERT,
        sym::HOME => KEY_HOME,
        sym::END => KEY_END,
        sym::PAGE_UP => KEY_PAGEUP,
        sym::PAGE_DOWN => KEY_PAGEDOWN,
        sym::LEFT => KEY_LEFT,
        sym::RIGHT => KEY_RIGHT,
        sym::UP => KEY_UP,
        sym::DOWN => KEY_DOWN,
        sym::PRINT => KEY_SYSRQ,
        sym::PAUSE => KEY_PAUSE,
        sym::SCROLL_LOCK => KEY_SCROLLLOCK,
        sym::MENU => KEY_COMPOSE,
        sym::SHIFT_L => KEY_LEFTSHIFT,
        sym::SHIFT_R => KEY_RIGHTSHIFT,
        sym::CONTROL_L => KEY_LEFTCTRL,
        sym::CONTROL_R => KEY_RIGHTCTRL,
        sym::ALT_L => KEY_LEFTALT,
        sym::ALT_R => KEY_RIGHTALT,
        sym::SUPER_L | sym::META_L => KEY_LEFTMETA,
        sym::SUPER_R => KEY_RIGHTMETA,
        sym::CAPS_LOCK => KEY_CAPSLOCK,
        sym::NUM_LOCK => KEY_NUMLOCK,
        // F1–F10 are consecutive codes, F11 and F12 are elsewhere.
        k if (sym::F1..sym::F1 + 10).contains(&k) => KEY_F1 + u16::try_from(k - sym::F1).ok()?,
        k if k == sym::F1 + 10 => KEY_F11,
        k if k == sym::F1 + 11 => KEY_F12,
        _ => return None,
    })
}

/// The XKB modifier bit a held key sets on this layout (Shift 1, Control 4, Mod1/Alt 8,
/// Mod4/Super 64), 0 for other keys.
pub fn modifier_mask(code: u16) -> u32 {
    use evdev::*;
    match code {
        KEY_LEFTSHIFT | KEY_RIGHTSHIFT => 1,
        KEY_LEFTCTRL | KEY_RIGHTCTRL => 4,
        KEY_LEFTALT | KEY_RIGHTALT => 8,
        KEY_LEFTMETA | KEY_RIGHTMETA => 64,
        _ => 0,
    }
}

/// The XKB lock bit a key toggles (Caps Lock 2, Num Lock = Mod2 16), 0 for other keys.
pub fn lock_mask(code: u16) -> u32 {
    match code {
        evdev::KEY_CAPSLOCK => 2,
        evdev::KEY_NUMLOCK => 16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::keys::{function_key, keysym_for_char};

    fn key(c: char) -> Option<(u16, bool)> {
        us_key(keysym_for_char(c)).map(|k| (k.code, k.shift))
    }

    #[test]
    fn characters_of_the_us_layout() {
        assert_eq!(key('a'), Some((evdev::KEY_A, false)));
        assert_eq!(key('A'), Some((evdev::KEY_A, true)));
        assert_eq!(key('z'), Some((evdev::KEY_Z, false)));
        assert_eq!(key('@'), Some((evdev::KEY_2, true)));
        assert_eq!(key('0'), Some((evdev::KEY_0, false)));
        assert_eq!(key(')'), Some((evdev::KEY_0, true)));
        assert_eq!(key('\n'), Some((evdev::KEY_ENTER, false)));
        assert_eq!(key(' '), Some((evdev::KEY_SPACE, false)));
        assert_eq!(key('~'), Some((evdev::KEY_GRAVE, true)));
        assert_eq!(key('|'), Some((evdev::KEY_BACKSLASH, true)));
        assert_eq!(key('"'), Some((evdev::KEY_APOSTROPHE, true)));
        assert_eq!(key('?'), Some((evdev::KEY_SLASH, true)));
        assert_eq!(key('{'), Some((evdev::KEY_LEFTBRACE, true)));
        assert_eq!(key(']'), Some((evdev::KEY_RIGHTBRACE, false)));
        assert_eq!(key('_'), Some((evdev::KEY_MINUS, true)));
        assert_eq!(key('+'), Some((evdev::KEY_EQUAL, true)));
        assert_eq!(key(':'), Some((evdev::KEY_SEMICOLON, true)));
        assert_eq!(key('<'), Some((evdev::KEY_COMMA, true)));
        assert_eq!(key('.'), Some((evdev::KEY_DOT, false)));
        // Every printable ASCII character has a key, and no two share a (code, shift).
        let mut seen = std::collections::HashSet::new();
        for c in ' '..='~' {
            let k = key(c).unwrap_or_else(|| panic!("no key for {c:?}"));
            assert!(seen.insert(k), "{c:?} shares {k:?}");
        }
        assert_eq!(seen.len(), 95);
    }

    #[test]
    fn named_keys_and_what_the_layout_lacks() {
        let code = |k| us_key(k).map(|k| k.code);
        assert_eq!(code(sym::RETURN), Some(28));
        assert_eq!(code(sym::BACKSPACE), Some(14));
        assert_eq!(code(sym::ESCAPE), Some(1));
        assert_eq!(code(sym::DELETE), Some(111));
        assert_eq!(code(sym::LEFT), Some(105));
        assert_eq!(code(sym::PAGE_DOWN), Some(109));
        assert_eq!(code(sym::CONTROL_L), Some(29));
        assert_eq!(code(sym::SUPER_L), Some(125));
        assert_eq!(code(function_key(1).unwrap_or(0)), Some(59));
        assert_eq!(code(function_key(10).unwrap_or(0)), Some(68));
        assert_eq!(code(function_key(11).unwrap_or(0)), Some(87));
        assert_eq!(code(function_key(12).unwrap_or(0)), Some(88));
        assert_eq!(code(function_key(13).unwrap_or(0)), None);
        assert!(us_key(sym::SHIFT_L).is_some_and(|k| !k.shift));
        for c in ['é', '€', 'ß', '😀', '\u{a0}'] {
            assert_eq!(key(c), None, "{c:?}");
        }
        assert_eq!(us_key(0x7f), None);
        assert_eq!(us_key(0), None);
    }

    #[test]
    fn modifier_bits() {
        assert_eq!(modifier_mask(evdev::KEY_LEFTSHIFT), 1);
        assert_eq!(modifier_mask(evdev::KEY_RIGHTCTRL), 4);
        assert_eq!(modifier_mask(evdev::KEY_LEFTALT), 8);
        assert_eq!(modifier_mask(evdev::KEY_LEFTMETA), 64);
        assert_eq!(modifier_mask(evdev::KEY_A), 0);
        assert_eq!(lock_mask(evdev::KEY_CAPSLOCK), 2);
        assert_eq!(lock_mask(evdev::KEY_A), 0);
        assert!(US_XKB_KEYMAP.contains("pc+us"));
    }
}
