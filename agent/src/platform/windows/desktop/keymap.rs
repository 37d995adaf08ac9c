//! The key model's numbers ([`tether_protocol::keys`]: X11 keysyms and Linux evdev positions)
//! as Windows keys: named keysyms to virtual keys, evdev codes to set-1 scan codes.

use super::send::Stroke;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::*;

/// A named key: its virtual key, and whether it is an extended key (E0-prefixed: the arrows and
/// the navigation block, the right-hand Ctrl and Alt, the Windows keys …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named {
    pub vk: u16,
    pub extended: bool,
}

const fn n(vk: u16) -> Option<Named> {
    Some(Named {
        vk,
        extended: false,
    })
}

const fn e(vk: u16) -> Option<Named> {
    Some(Named { vk, extended: true })
}

/// The virtual key of a named keysym (not a character: characters go through the layout).
pub fn named(keysym: u32) -> Option<Named> {
    match keysym {
        0xff08 => n(VK_BACK),
        0xff09 => n(VK_TAB),
        0xff0b => n(VK_CLEAR),
        0xff0d => n(VK_RETURN),
        0xff13 => n(VK_PAUSE),
        0xff14 => n(VK_SCROLL),
        0xff15 => e(VK_SNAPSHOT), // Sys_Req
        0xff1b => n(VK_ESCAPE),
        0xff50 => e(VK_HOME),
        0xff51 => e(VK_LEFT),
        0xff52 => e(VK_UP),
        0xff53 => e(VK_RIGHT),
        0xff54 => e(VK_DOWN),
        0xff55 => e(VK_PRIOR),
        0xff56 => e(VK_NEXT),
        0xff57 => e(VK_END),
        0xff60 => n(VK_SELECT),
        0xff61 => e(VK_SNAPSHOT), // Print
        0xff62 => n(VK_EXECUTE),
        0xff63 => e(VK_INSERT),
        0xff67 => e(VK_APPS), // Menu
        0xff69 => n(VK_CANCEL),
        0xff6a => n(VK_HELP),
        0xff6b => e(VK_CANCEL), // Break
        0xff7f => e(VK_NUMLOCK),
        // The keypad: the keysym says which meaning (Num Lock on or off) the technician got.
        0xff80 => n(VK_SPACE),
        0xff89 => n(VK_TAB),
        0xff8d => e(VK_RETURN), // KP_Enter
        0xff95 => n(VK_HOME),
        0xff96 => n(VK_LEFT),
        0xff97 => n(VK_UP),
        0xff98 => n(VK_RIGHT),
        0xff99 => n(VK_DOWN),
        0xff9a => n(VK_PRIOR),
        0xff9b => n(VK_NEXT),
        0xff9c => n(VK_END),
        0xff9d => n(VK_CLEAR), // KP_Begin
        0xff9e => n(VK_INSERT),
        0xff9f => n(VK_DELETE),
        0xffaa => n(VK_MULTIPLY),
        0xffab => n(VK_ADD),
        0xffac => n(VK_SEPARATOR),
        0xffad => n(VK_SUBTRACT),
        0xffae => n(VK_DECIMAL),
        0xffaf => e(VK_DIVIDE),
        0xffb0..=0xffb9 => n(VK_NUMPAD0 + (keysym - 0xffb0) as u16),
        // F1–F24 (Windows has no F25–F35).
        0xffbe..=0xffd5 => n(VK_F1 + (keysym - 0xffbe) as u16),
        0xffe1 => n(VK_LSHIFT),
        0xffe2 => n(VK_RSHIFT),
        0xffe3 => n(VK_LCONTROL),
        0xffe4 => e(VK_RCONTROL),
        0xffe5 => n(VK_CAPITAL),
        // Meta is Alt on PC keyboards (X11 gives Meta_L for Shift+Alt).
        0xffe7 | 0xffe9 => n(VK_LMENU),
        0xffe8 | 0xffea => e(VK_RMENU),
        0xffeb | 0xffed => e(VK_LWIN), // Super_L, Hyper_L
        0xffec | 0xffee => e(VK_RWIN),
        // ISO_Level3_Shift (AltGr): Windows reads it as the right Alt.
        0xfe03 => e(VK_RMENU),
        0xffff => e(VK_DELETE),
        // XF86 multimedia keys.
        0x1008_ff11 => e(VK_VOLUME_DOWN),
        0x1008_ff12 => e(VK_VOLUME_MUTE),
        0x1008_ff13 => e(VK_VOLUME_UP),
        0x1008_ff14 => e(VK_MEDIA_PLAY_PAUSE),
        0x1008_ff15 => e(VK_MEDIA_STOP),
        0x1008_ff16 => e(VK_MEDIA_PREV_TRACK),
        0x1008_ff17 => e(VK_MEDIA_NEXT_TRACK),
        _ => None,
    }
}

/// The Windows key at the physical position of the Linux evdev code `code` (set-1 scan codes,
/// which evdev numbers follow for the main block), if there is one. A [`Stroke::Scan`] is
/// resolved to the virtual key the layout puts there when it is pressed.
pub fn physical(code: u16) -> Option<Stroke> {
    let scan = |scan: u16| {
        Some(Stroke::Scan {
            scan,
            extended: false,
        })
    };
    // Extended keys by their virtual key: their E0 scan codes do not map back everywhere.
    let ext = |scan: u16, vk: u16| {
        Some(Stroke::Vk {
            vk,
            scan,
            extended: true,
        })
    };
    match code {
        // Esc … keypad '.', then the ISO key left of Z, F11, F12: the same numbers.
        1..=83 | 86..=88 => scan(code),
        89 => scan(0x73),                 // RO
        92 => scan(0x79),                 // Henkan
        93 => scan(0x70),                 // Katakana/Hiragana
        94 => scan(0x7b),                 // Muhenkan
        96 => ext(0x1c, VK_RETURN),       // KP Enter
        97 => ext(0x1d, VK_RCONTROL),     // right Ctrl
        98 => ext(0x35, VK_DIVIDE),       // KP /
        99 => ext(0x37, VK_SNAPSHOT),     // SysRq / Print
        100 => ext(0x38, VK_RMENU),       // right Alt
        102 => ext(0x47, VK_HOME),        // Home
        103 => ext(0x48, VK_UP),          // Up
        104 => ext(0x49, VK_PRIOR),       // Page Up
        105 => ext(0x4b, VK_LEFT),        // Left
        106 => ext(0x4d, VK_RIGHT),       // Right
        107 => ext(0x4f, VK_END),         // End
        108 => ext(0x50, VK_DOWN),        // Down
        109 => ext(0x51, VK_NEXT),        // Page Down
        110 => ext(0x52, VK_INSERT),      // Insert
        111 => ext(0x53, VK_DELETE),      // Delete
        113 => ext(0x20, VK_VOLUME_MUTE), // Mute
        114 => ext(0x2e, VK_VOLUME_DOWN), // Volume Down
        115 => ext(0x30, VK_VOLUME_UP),   // Volume Up
        117 => scan(0x59),                // KP =
        // Pause's scan code is the E1 sequence, which SendInput cannot send: its virtual key.
        119 => Some(Stroke::Vk {
            vk: VK_PAUSE,
            scan: 0x45,
            extended: false,
        }),
        121 => scan(0x7e),                      // KP ,
        122 => scan(0x72),                      // Hangeul
        123 => scan(0x71),                      // Hanja
        124 => scan(0x7d),                      // Yen
        125 => ext(0x5b, VK_LWIN),              // left Windows
        126 => ext(0x5c, VK_RWIN),              // right Windows
        127 => ext(0x5d, VK_APPS),              // Menu
        183..=190 => scan(0x64 + (code - 183)), // F13–F20
        191..=193 => scan(0x6c + (code - 191)), // F21–F23
        194 => scan(0x76),                      // F24
        _ => None,
    }
}

/// Modifier virtual keys, as Windows reports them (either side).
pub const SHIFT: u16 = VK_SHIFT;
pub const CONTROL: u16 = VK_CONTROL;
pub const ALT: u16 = VK_MENU;
pub const CAPS_LOCK: u16 = VK_CAPITAL;
pub const LEFT_SHIFT: u16 = VK_LSHIFT;

/// Which of Shift, Ctrl and Alt a virtual key is (`VkKeyScan`'s bits: 1, 2, 4), if any.
pub fn modifier_bit(vk: u16) -> u8 {
    match vk {
        VK_SHIFT | VK_LSHIFT | VK_RSHIFT => 1,
        VK_CONTROL | VK_LCONTROL | VK_RCONTROL => 2,
        VK_MENU | VK_LMENU | VK_RMENU => 4,
        _ => 0,
    }
}

/// The modifier bit of a physical key (evdev code).
pub fn modifier_bit_of_code(code: u16) -> u8 {
    match code {
        42 | 54 => 1,
        29 | 97 => 2,
        56 | 100 => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::keys::{function_key, sym};

    #[test]
    fn named_keys_map_to_virtual_keys() {
        assert_eq!(named(sym::RETURN), n(VK_RETURN));
        assert_eq!(named(sym::LEFT), e(VK_LEFT));
        assert_eq!(named(sym::CONTROL_R), e(VK_RCONTROL));
        assert_eq!(named(function_key(1).unwrap_or(0)), n(VK_F1));
        assert_eq!(named(function_key(24).unwrap_or(0)), n(VK_F24));
        assert_eq!(named(function_key(25).unwrap_or(0)), None);
        assert_eq!(named(0xffb7), n(VK_NUMPAD7));
        assert_eq!(named(u32::from('a')), None);
    }

    #[test]
    fn evdev_codes_map_to_scan_codes() {
        // KEY_A is 30, scan code 0x1e; KEY_UP 103 is E0 48.
        assert_eq!(
            physical(30),
            Some(Stroke::Scan {
                scan: 0x1e,
                extended: false
            })
        );
        assert_eq!(
            physical(103),
            Some(Stroke::Vk {
                vk: VK_UP,
                scan: 0x48,
                extended: true
            })
        );
        assert_eq!(
            physical(194),
            Some(Stroke::Scan {
                scan: 0x76,
                extended: false
            })
        );
        assert_eq!(physical(0), None);
        assert_eq!(modifier_bit(VK_RCONTROL), 2);
        assert_eq!(modifier_bit_of_code(42), 1);
    }
}
