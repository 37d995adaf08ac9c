//! Remote input through enigo (XTEST on X11): mouse, keys with modifiers, Unicode text.

use enigo::{Axis, Button, Coordinate, Direction, Enigo, Keyboard, Mouse, Settings};
use tether_protocol::session::{InputEvent, Key, MouseButton};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot open the input device (is DISPLAY set?): {0}")]
    Open(String),
    #[error("input failed: {0}")]
    Failed(String),
}

fn button(b: MouseButton) -> Button {
    match b {
        MouseButton::Left => Button::Left,
        MouseButton::Middle => Button::Middle,
        MouseButton::Right => Button::Right,
    }
}

fn key(k: Key) -> Option<enigo::Key> {
    use enigo::Key as E;
    Some(match k {
        Key::Return => E::Return,
        Key::Tab => E::Tab,
        Key::Backspace => E::Backspace,
        Key::Escape => E::Escape,
        Key::Delete => E::Delete,
        Key::Up => E::UpArrow,
        Key::Down => E::DownArrow,
        Key::Left => E::LeftArrow,
        Key::Right => E::RightArrow,
        Key::Home => E::Home,
        Key::End => E::End,
        Key::PageUp => E::PageUp,
        Key::PageDown => E::PageDown,
        Key::Control => E::Control,
        Key::Alt => E::Alt,
        Key::Shift => E::Shift,
        Key::Meta => E::Meta,
        Key::F(1) => E::F1,
        Key::F(2) => E::F2,
        Key::F(3) => E::F3,
        Key::F(4) => E::F4,
        Key::F(5) => E::F5,
        Key::F(6) => E::F6,
        Key::F(7) => E::F7,
        Key::F(8) => E::F8,
        Key::F(9) => E::F9,
        Key::F(10) => E::F10,
        Key::F(11) => E::F11,
        Key::F(12) => E::F12,
        Key::F(_) => return None,
    })
}

/// Applies one event. Opens the input connection per call (sessions are per request for now).
pub fn apply(event: &InputEvent) -> Result<(), InputError> {
    let mut e = Enigo::new(&Settings::default()).map_err(|e| InputError::Open(e.to_string()))?;
    let fail = |e: enigo::InputError| InputError::Failed(e.to_string());
    match event {
        InputEvent::MouseMove { x, y } => e.move_mouse(*x, *y, Coordinate::Abs).map_err(fail),
        InputEvent::Button { button: b, down } => e
            .button(
                button(*b),
                if *down {
                    Direction::Press
                } else {
                    Direction::Release
                },
            )
            .map_err(fail),
        InputEvent::Click { x, y, button: b } => {
            e.move_mouse(*x, *y, Coordinate::Abs).map_err(fail)?;
            e.button(button(*b), Direction::Click).map_err(fail)
        }
        InputEvent::Scroll { dx, dy } => {
            if *dy != 0 {
                e.scroll(*dy, Axis::Vertical).map_err(fail)?;
            }
            if *dx != 0 {
                e.scroll(*dx, Axis::Horizontal).map_err(fail)?;
            }
            Ok(())
        }
        InputEvent::Key { key: k, down } => {
            let k = key(*k).ok_or_else(|| InputError::Failed("unknown key".into()))?;
            e.key(
                k,
                if *down {
                    Direction::Press
                } else {
                    Direction::Release
                },
            )
            .map_err(fail)
        }
        InputEvent::Text(t) => {
            // Newlines and tabs as keys: typed as text they are not reliable across toolkits.
            for (i, line) in t.split('\n').enumerate() {
                if i > 0 {
                    e.key(enigo::Key::Return, Direction::Click).map_err(fail)?;
                }
                if !line.is_empty() {
                    e.text(line).map_err(fail)?;
                }
            }
            Ok(())
        }
        InputEvent::Combo(keys) => {
            let keys: Vec<_> = keys.iter().filter_map(|k| key(*k)).collect();
            for k in &keys {
                e.key(*k, Direction::Press).map_err(fail)?;
            }
            for k in keys.iter().rev() {
                e.key(*k, Direction::Release).map_err(fail)?;
            }
            Ok(())
        }
    }
}
