//! From the viewer window's keyboard to the key model (`tether_protocol::keys`): every key the
//! window reports goes to the remote as a key going down and up, with its keysym (in translate
//! mode the character the technician's layout produced) and its physical position (an evdev
//! code from the key's place on a US keyboard, which is how winit names positions).
//!
//! egui reports a printable key as a `Key` event followed, in the same frame, by the `Text` it
//! typed; the text decides the keysym (so Shift, Caps Lock and the technician's layout are
//! honoured), and the key's release releases that same keysym. With Ctrl or Cmd held egui types
//! no text, so the keysym comes from the key itself. Text with no key before it (an input
//! method, a composed character) goes as text. Pure: fed events, it returns what to send.

use eframe::egui::{self, Key};
use std::collections::HashMap;
use tether_protocol::keys::{self, KeyEvent, KeyMode, sym};
use tether_protocol::session::InputEvent;

#[derive(Default)]
pub struct KeyTranslator {
    pub mode: KeyMode,
    /// Keys down on the remote, by the window's key (its physical position where known).
    held: HashMap<Key, (u32, u16)>,
    /// A printable key pressed whose text has not come yet: (key, code, keysym from the key).
    pending: Option<(Key, u16, Option<u32>)>,
    /// The text of a repeated key is the remote's own autorepeat's business.
    swallow_text: bool,
}

impl KeyTranslator {
    pub fn new(mode: KeyMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Whether any key is down on the remote because of this window.
    pub fn any_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// One frame's events, in order; returns the input to send, in order.
    pub fn frame(&mut self, events: &[egui::Event]) -> Vec<InputEvent> {
        let mut out = Vec::new();
        for ev in events {
            match ev {
                egui::Event::Key {
                    key,
                    physical_key,
                    pressed,
                    modifiers,
                    ..
                } => {
                    self.flush(&mut out);
                    let id = physical_key.unwrap_or(*key);
                    let code = physical_key.map_or(0, evdev_code);
                    if *pressed {
                        self.press(id, *key, code, *modifiers, &mut out);
                    } else if let Some((keysym, code)) = self.held.remove(&id) {
                        out.push(key_event(keysym, code, false, self.mode));
                    }
                }
                egui::Event::Text(t) => {
                    if std::mem::take(&mut self.swallow_text) {
                        continue;
                    }
                    let mut chars = t.chars();
                    match (self.pending.take(), chars.next(), chars.next()) {
                        (Some((id, code, _)), Some(c), None) => {
                            let keysym = keys::keysym_for_char(c);
                            self.down(id, keysym, code, &mut out);
                        }
                        (_, Some(_), _) => out.push(InputEvent::Text(t.clone())),
                        _ => {}
                    }
                }
                // egui turns Ctrl+C/X/V (and Shift+Delete, Shift+Insert) into clipboard events
                // and reports neither the key nor its release: type the letter, Ctrl being
                // already down on the remote.
                egui::Event::Copy => self.tap('c', Key::C, &mut out),
                egui::Event::Cut => self.tap('x', Key::X, &mut out),
                egui::Event::Paste(_) => self.tap('v', Key::V, &mut out),
                _ => {}
            }
        }
        self.flush(&mut out);
        out
    }

    /// Everything held goes up (the window lost focus or the session ends).
    pub fn release_all(&mut self) -> Vec<InputEvent> {
        self.pending = None;
        if self.held.is_empty() {
            return vec![];
        }
        let mut out: Vec<InputEvent> = self
            .held
            .drain()
            .map(|(_, (keysym, code))| key_event(keysym, code, false, self.mode))
            .collect();
        // And whatever the agent still holds for this session, should any release be lost.
        out.push(InputEvent::ReleaseKeys);
        out
    }

    fn press(
        &mut self,
        id: Key,
        key: Key,
        code: u16,
        modifiers: egui::Modifiers,
        out: &mut Vec<InputEvent>,
    ) {
        if self.held.contains_key(&id) {
            // A repeat: the remote repeats a held key itself.
            self.swallow_text = true;
            return;
        }
        if let Some(keysym) = named_keysym(key) {
            return self.down(id, keysym, code, out);
        }
        let from_key = key_keysym(key, modifiers.shift);
        // Ctrl as this window saw it go down, too: winit's modifier state on X11 can lag the
        // key events when they come fast (winit#3388).
        let ctrl = modifiers.ctrl
            || modifiers.command
            || self.held.contains_key(&Key::ControlLeft)
            || self.held.contains_key(&Key::ControlRight);
        if self.mode == KeyMode::Physical || ctrl {
            // No text comes with Ctrl/Cmd; in physical mode the position is what counts.
            if let Some(keysym) = from_key {
                self.down(id, keysym, code, out);
                self.swallow_text = !ctrl;
            }
            return;
        }
        self.pending = Some((id, code, from_key));
    }

    /// A key whose text never came (a dead key, or a toolkit that sends none) goes by its name.
    fn flush(&mut self, out: &mut Vec<InputEvent>) {
        if let Some((id, code, Some(keysym))) = self.pending.take() {
            self.down(id, keysym, code, out);
        }
    }

    fn down(&mut self, id: Key, keysym: u32, code: u16, out: &mut Vec<InputEvent>) {
        self.held.insert(id, (keysym, code));
        out.push(key_event(keysym, code, true, self.mode));
    }

    fn tap(&mut self, c: char, key: Key, out: &mut Vec<InputEvent>) {
        self.flush(out);
        let keysym = keys::keysym_for_char(c);
        let code = evdev_code(key);
        out.push(key_event(keysym, code, true, self.mode));
        out.push(key_event(keysym, code, false, self.mode));
    }
}

fn key_event(keysym: u32, code: u16, down: bool, mode: KeyMode) -> InputEvent {
    InputEvent::KeyEvent(KeyEvent {
        keysym,
        code,
        down,
        mode,
    })
}

/// Whether this frame's events press Ctrl+Enter. `ctrl` is whether Ctrl is down, tracked from
/// the Ctrl keys' own events across frames: egui's modifier state alone can lag fast input on
/// X11 (winit#3388), and a lost Ctrl would type a newline instead of saving.
pub fn ctrl_enter(events: &[egui::Event], ctrl: &mut bool) -> bool {
    let mut hit = false;
    for ev in events {
        if let egui::Event::Key {
            key,
            pressed,
            modifiers,
            ..
        } = ev
        {
            match key {
                Key::ControlLeft | Key::ControlRight => *ctrl = *pressed,
                Key::Enter if *pressed && (*ctrl || modifiers.ctrl || modifiers.command) => {
                    hit = true
                }
                _ => {}
            }
        }
    }
    hit
}

/// Keys that type no character: their keysym by name.
pub fn named_keysym(key: Key) -> Option<u32> {
    use Key as K;
    Some(match key {
        K::Escape => sym::ESCAPE,
        K::Tab => sym::TAB,
        K::Backspace => sym::BACKSPACE,
        K::Enter => sym::RETURN,
        K::Insert => sym::INSERT,
        K::Delete => sym::DELETE,
        K::Home => sym::HOME,
        K::End => sym::END,
        K::PageUp => sym::PAGE_UP,
        K::PageDown => sym::PAGE_DOWN,
        K::ArrowUp => sym::UP,
        K::ArrowDown => sym::DOWN,
        K::ArrowLeft => sym::LEFT,
        K::ArrowRight => sym::RIGHT,
        K::ShiftLeft => sym::SHIFT_L,
        K::ShiftRight => sym::SHIFT_R,
        K::ControlLeft => sym::CONTROL_L,
        K::ControlRight => sym::CONTROL_R,
        K::AltLeft => sym::ALT_L,
        K::AltRight => sym::ALT_R,
        K::SuperLeft => sym::SUPER_L,
        K::SuperRight => sym::SUPER_R,
        K::CapsLock => sym::CAPS_LOCK,
        K::NumLock => sym::NUM_LOCK,
        K::ScrollLock => sym::SCROLL_LOCK,
        K::PrintScreen => sym::PRINT,
        K::Pause => sym::PAUSE,
        K::Menu => sym::MENU,
        K::Help => sym::HELP,
        k => return function_number(k).and_then(keys::function_key),
    })
}

fn function_number(key: Key) -> Option<u8> {
    use Key as K;
    const F: [Key; 35] = [
        K::F1,
        K::F2,
        K::F3,
        K::F4,
        K::F5,
        K::F6,
        K::F7,
        K::F8,
        K::F9,
        K::F10,
        K::F11,
        K::F12,
        K::F13,
        K::F14,
        K::F15,
        K::F16,
        K::F17,
        K::F18,
        K::F19,
        K::F20,
        K::F21,
        K::F22,
        K::F23,
        K::F24,
        K::F25,
        K::F26,
        K::F27,
        K::F28,
        K::F29,
        K::F30,
        K::F31,
        K::F32,
        K::F33,
        K::F34,
        K::F35,
    ];
    F.iter().position(|&f| f == key).map(|i| i as u8 + 1)
}

/// The character keysym of a printable key by its (logical) name, for when no text comes.
fn key_keysym(key: Key, shift: bool) -> Option<u32> {
    use Key as K;
    let name = key.name();
    let c = match key {
        K::Space => ' ',
        K::Colon => ':',
        K::Comma => ',',
        K::Backslash => '\\',
        K::Slash => '/',
        K::Pipe => '|',
        K::Questionmark => '?',
        K::Exclamationmark => '!',
        K::OpenBracket => '[',
        K::CloseBracket => ']',
        K::OpenCurlyBracket => '{',
        K::CloseCurlyBracket => '}',
        K::Backtick => '`',
        K::Minus => '-',
        K::Period => '.',
        K::Plus => '+',
        K::Equals => '=',
        K::Semicolon => ';',
        K::Quote => '\'',
        _ => {
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_alphanumeric() => {
                    if shift {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                }
                _ => return None,
            }
        }
    };
    Some(keys::keysym_for_char(c))
}

/// The Linux evdev code of the key at this position on a US keyboard (0: none).
pub fn evdev_code(key: Key) -> u16 {
    use Key as K;
    match key {
        K::Escape => 1,
        K::Num1 => 2,
        K::Num2 => 3,
        K::Num3 => 4,
        K::Num4 => 5,
        K::Num5 => 6,
        K::Num6 => 7,
        K::Num7 => 8,
        K::Num8 => 9,
        K::Num9 => 10,
        K::Num0 => 11,
        K::Minus => 12,
        K::Equals => 13,
        K::Backspace => 14,
        K::Tab => 15,
        K::Q => 16,
        K::W => 17,
        K::E => 18,
        K::R => 19,
        K::T => 20,
        K::Y => 21,
        K::U => 22,
        K::I => 23,
        K::O => 24,
        K::P => 25,
        K::OpenBracket => 26,
        K::CloseBracket => 27,
        K::Enter => 28,
        K::ControlLeft => 29,
        K::A => 30,
        K::S => 31,
        K::D => 32,
        K::F => 33,
        K::G => 34,
        K::H => 35,
        K::J => 36,
        K::K => 37,
        K::L => 38,
        K::Semicolon => 39,
        K::Quote => 40,
        K::Backtick => 41,
        K::ShiftLeft => 42,
        K::Backslash => 43,
        K::Z => 44,
        K::X => 45,
        K::C => 46,
        K::V => 47,
        K::B => 48,
        K::N => 49,
        K::M => 50,
        K::Comma => 51,
        K::Period => 52,
        K::Slash => 53,
        K::ShiftRight => 54,
        K::AltLeft => 56,
        K::Space => 57,
        K::CapsLock => 58,
        K::F1 => 59,
        K::F2 => 60,
        K::F3 => 61,
        K::F4 => 62,
        K::F5 => 63,
        K::F6 => 64,
        K::F7 => 65,
        K::F8 => 66,
        K::F9 => 67,
        K::F10 => 68,
        K::NumLock => 69,
        K::ScrollLock => 70,
        K::IntlBackslash => 86,
        K::F11 => 87,
        K::F12 => 88,
        K::ControlRight => 97,
        K::PrintScreen => 99,
        K::AltRight => 100,
        K::Home => 102,
        K::ArrowUp => 103,
        K::PageUp => 104,
        K::ArrowLeft => 105,
        K::ArrowRight => 106,
        K::End => 107,
        K::ArrowDown => 108,
        K::PageDown => 109,
        K::Insert => 110,
        K::Delete => 111,
        K::Pause => 119,
        K::SuperLeft => 125,
        K::SuperRight => 126,
        K::Menu => 127,
        k => match function_number(k) {
            Some(n @ 13..=24) => 183 + u16::from(n) - 13,
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: Key, physical: Key, pressed: bool, modifiers: egui::Modifiers) -> egui::Event {
        egui::Event::Key {
            key,
            physical_key: Some(physical),
            pressed,
            repeat: false,
            modifiers,
        }
    }

    fn ks(events: &[InputEvent]) -> Vec<(u32, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                InputEvent::KeyEvent(k) => Some((k.keysym, k.down)),
                _ => None,
            })
            .collect()
    }

    const NONE: egui::Modifiers = egui::Modifiers::NONE;
    const SHIFT: egui::Modifiers = egui::Modifiers::SHIFT;
    const CTRL: egui::Modifiers = egui::Modifiers::CTRL;

    #[test]
    fn shifted_characters_go_as_the_keysym_the_text_says() {
        let mut t = KeyTranslator::default();
        let out = t.frame(&[
            key(Key::ShiftLeft, Key::ShiftLeft, true, SHIFT),
            key(Key::Exclamationmark, Key::Num1, true, SHIFT),
            egui::Event::Text("!".into()),
        ]);
        assert_eq!(ks(&out), vec![(sym::SHIFT_L, true), (0x21, true)]);
        let out = t.frame(&[
            key(Key::Exclamationmark, Key::Num1, false, SHIFT),
            key(Key::ShiftLeft, Key::ShiftLeft, false, NONE),
        ]);
        assert_eq!(ks(&out), vec![(0x21, false), (sym::SHIFT_L, false)]);
        assert!(!t.any_held());
    }

    #[test]
    fn ctrl_enter_counts_ctrl_from_its_own_key_events() {
        let none = egui::Modifiers::NONE;
        let mut ctrl = false;
        // Ctrl's press seen, but the modifiers on Enter lag behind: still Ctrl+Enter.
        assert!(ctrl_enter(
            &[
                key(Key::ControlLeft, Key::ControlLeft, true, none),
                key(Key::Enter, Key::Enter, true, none),
            ],
            &mut ctrl
        ));
        // Ctrl held from an earlier frame.
        assert!(ctrl_enter(
            &[key(Key::Enter, Key::Enter, true, none)],
            &mut ctrl
        ));
        assert!(!ctrl_enter(
            &[
                key(Key::ControlLeft, Key::ControlLeft, false, none),
                key(Key::Enter, Key::Enter, true, none),
            ],
            &mut ctrl
        ));
        assert!(ctrl_enter(
            &[key(Key::Enter, Key::Enter, true, CTRL)],
            &mut ctrl
        ));
    }

    #[test]
    fn ctrl_combinations_take_the_keysym_from_the_key() {
        let mut t = KeyTranslator::default();
        let ctrl_shift = CTRL | SHIFT;
        let out = t.frame(&[
            key(Key::ControlLeft, Key::ControlLeft, true, CTRL),
            key(Key::ShiftLeft, Key::ShiftLeft, true, ctrl_shift),
            key(Key::T, Key::T, true, ctrl_shift),
            key(Key::T, Key::T, false, ctrl_shift),
        ]);
        assert_eq!(
            ks(&out),
            vec![
                (sym::CONTROL_L, true),
                (sym::SHIFT_L, true),
                (0x54, true),
                (0x54, false)
            ]
        );
        // Ctrl+C reaches egui as a Copy event, with no key and no release.
        let out = t.frame(&[egui::Event::Copy]);
        assert_eq!(ks(&out), vec![(0x63, true), (0x63, false)]);
    }

    #[test]
    fn repeats_and_their_text_are_left_to_the_remote() {
        let mut t = KeyTranslator::default();
        let out = t.frame(&[
            key(Key::A, Key::A, true, NONE),
            egui::Event::Text("a".into()),
        ]);
        assert_eq!(ks(&out), vec![(0x61, true)]);
        let out = t.frame(&[
            key(Key::A, Key::A, true, NONE),
            egui::Event::Text("a".into()),
        ]);
        assert!(out.is_empty(), "{out:?}");
        let out = t.frame(&[key(Key::A, Key::A, false, NONE)]);
        assert_eq!(ks(&out), vec![(0x61, false)]);
    }

    #[test]
    fn text_without_a_key_goes_as_text_and_focus_loss_releases_everything() {
        let mut t = KeyTranslator::default();
        let out = t.frame(&[egui::Event::Text("日本".into())]);
        assert_eq!(out, vec![InputEvent::Text("日本".into())]);
        t.frame(&[
            key(Key::AltLeft, Key::AltLeft, true, egui::Modifiers::ALT),
            key(Key::F4, Key::F4, true, egui::Modifiers::ALT),
        ]);
        let out = t.release_all();
        let mut up = ks(&out);
        up.sort();
        assert_eq!(up, vec![(sym::F1 + 3, false), (sym::ALT_L, false)]);
        assert_eq!(out.last(), Some(&InputEvent::ReleaseKeys));
        assert!(!t.any_held());
    }

    #[test]
    fn physical_mode_sends_positions() {
        let mut t = KeyTranslator::new(KeyMode::Physical);
        let out = t.frame(&[
            key(Key::Y, Key::Z, true, NONE),
            egui::Event::Text("y".into()),
        ]);
        match out.as_slice() {
            [InputEvent::KeyEvent(k)] => {
                assert_eq!(k.code, 44);
                assert_eq!(k.mode, KeyMode::Physical);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(evdev_code(Key::F13), 183);
        assert_eq!(evdev_code(Key::F24), 194);
    }
}
