//! Input on X11: the mouse through enigo, keys and text through [`super::keyboard`] (XTEST,
//! the key model of `tether_protocol::keys`).

use super::keyboard::{Keyboard, KeyboardError};
use crate::platform::{InputError, InputSink};
use enigo::{Axis, Button, Coordinate, Direction, Enigo, Mouse, Settings};
use tether_protocol::keys::{KeyEvent, KeyMode};
use tether_protocol::session::{InputEvent, MouseButton};

fn button(b: MouseButton) -> Button {
    match b {
        MouseButton::Left => Button::Left,
        MouseButton::Middle => Button::Middle,
        MouseButton::Right => Button::Right,
    }
}

fn keysym(k: tether_protocol::session::Key) -> Option<u32> {
    k.keysym()
}

fn key_event(keysym: u32, down: bool) -> KeyEvent {
    KeyEvent {
        keysym,
        code: 0,
        down,
        mode: KeyMode::Translate,
    }
}

/// The desktop's input devices, opened on first use and kept for the session.
#[derive(Default)]
pub struct Devices {
    mouse: Option<Enigo>,
    keyboard: Option<Keyboard>,
}

impl InputSink for Devices {
    fn release_if_held(&mut self) {
        if let Some(kb) = self.keyboard.as_mut()
            && kb.any_held()
        {
            tracing::info!("viewer silent with keys held: releasing them");
            if let Err(e) = kb.release_all() {
                tracing::warn!("releasing held keys: {e}");
            }
        }
    }

    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        let fail = |e: enigo::InputError| InputError::Failed(e.to_string());
        let kfail = |e: KeyboardError| InputError::Failed(e.to_string());
        match event {
            InputEvent::MouseMove { x, y } => self
                .mouse()?
                .move_mouse(*x, *y, Coordinate::Abs)
                .map_err(fail),
            InputEvent::Button { button: b, down } => self
                .mouse()?
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
                let e = self.mouse()?;
                e.move_mouse(*x, *y, Coordinate::Abs).map_err(fail)?;
                e.button(button(*b), Direction::Click).map_err(fail)
            }
            InputEvent::Scroll { dx, dy } => {
                let e = self.mouse()?;
                if *dy != 0 {
                    e.scroll(*dy, Axis::Vertical).map_err(fail)?;
                }
                if *dx != 0 {
                    e.scroll(*dx, Axis::Horizontal).map_err(fail)?;
                }
                Ok(())
            }
            InputEvent::Key { key: k, down } => {
                let ks = keysym(*k).ok_or_else(|| InputError::Failed("unknown key".into()))?;
                self.keyboard()?.apply(&key_event(ks, *down)).map_err(kfail)
            }
            InputEvent::Text(t) => self.keyboard()?.type_text(t).map_err(kfail),
            InputEvent::Combo(keys) => {
                let syms: Vec<u32> = keys.iter().filter_map(|k| keysym(*k)).collect();
                let kb = self.keyboard()?;
                for &s in &syms {
                    kb.apply(&key_event(s, true)).map_err(kfail)?;
                }
                for &s in syms.iter().rev() {
                    kb.apply(&key_event(s, false)).map_err(kfail)?;
                }
                Ok(())
            }
            InputEvent::KeyEvent(ev) => self.keyboard()?.apply(ev).map_err(kfail),
            InputEvent::ReleaseKeys => match self.keyboard.as_mut() {
                Some(kb) => kb.release_all().map_err(kfail),
                None => Ok(()),
            },
        }
    }
}

impl Devices {
    fn mouse(&mut self) -> Result<&mut Enigo, InputError> {
        if self.mouse.is_none() {
            self.mouse = Some(
                Enigo::new(&Settings::default()).map_err(|e| InputError::Open(e.to_string()))?,
            );
        }
        self.mouse
            .as_mut()
            .ok_or_else(|| InputError::Open("no mouse".into()))
    }

    fn keyboard(&mut self) -> Result<&mut Keyboard, InputError> {
        if self.keyboard.is_none() {
            self.keyboard = Some(Keyboard::open().map_err(|e| InputError::Open(e.to_string()))?);
        }
        self.keyboard
            .as_mut()
            .ok_or_else(|| InputError::Open("no keyboard".into()))
    }
}
