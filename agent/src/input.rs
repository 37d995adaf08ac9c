//! Remote input for a session: the mouse through enigo, keys and text through
//! [`crate::keyboard`] (XTEST, the key model of `tether_protocol::keys`).

use crate::keyboard::{Keyboard, KeyboardError};
use enigo::{Axis, Button, Coordinate, Direction, Enigo, Mouse, Settings};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use tether_protocol::keys::{KeyEvent, KeyMode};
use tether_protocol::session::{HELD_KEYS_SILENCE_MS, InputEvent, Key, MouseButton};
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

/// The keysym of a named key of the older key model (`tether key`, the toolbar's combos).
fn keysym(k: Key) -> Option<u32> {
    use tether_protocol::keys::{function_key, sym};
    Some(match k {
        Key::Return => sym::RETURN,
        Key::Tab => sym::TAB,
        Key::Backspace => sym::BACKSPACE,
        Key::Escape => sym::ESCAPE,
        Key::Delete => sym::DELETE,
        Key::Up => sym::UP,
        Key::Down => sym::DOWN,
        Key::Left => sym::LEFT,
        Key::Right => sym::RIGHT,
        Key::Home => sym::HOME,
        Key::End => sym::END,
        Key::PageUp => sym::PAGE_UP,
        Key::PageDown => sym::PAGE_DOWN,
        Key::Control => sym::CONTROL_L,
        Key::Alt => sym::ALT_L,
        Key::Shift => sym::SHIFT_L,
        Key::Meta => sym::SUPER_L,
        Key::F(n) => return function_key(n),
    })
}

fn key_event(keysym: u32, down: bool) -> KeyEvent {
    KeyEvent {
        keysym,
        code: 0,
        down,
        mode: KeyMode::Translate,
    }
}

enum Job {
    Event(
        InputEvent,
        tokio::sync::oneshot::Sender<Result<(), InputError>>,
    ),
    /// The viewer is still there (it holds keys down).
    KeepAlive,
}

/// A session's input: one thread holding one connection to the desktop for the whole session,
/// applying events in order. When the session ends (this is dropped), every key still held is
/// released and the keymap restored.
pub struct Input {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Input {
    pub fn spawn() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("session-input".into())
            .spawn(move || {
                let mut devices = Devices::default();
                let silence = Duration::from_millis(HELD_KEYS_SILENCE_MS);
                loop {
                    match rx.recv_timeout(silence) {
                        Ok(Job::Event(ev, reply)) => {
                            let _ = reply.send(devices.apply(&ev));
                        }
                        Ok(Job::KeepAlive) => {}
                        // Keys held and the viewer silent: it is gone (killed, cut off), so its
                        // keys must not stay down on the user's desktop until the relay notices.
                        Err(RecvTimeoutError::Timeout) => devices.release_if_held(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Dropping the devices releases held keys and restores the keymap.
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the input thread: {e}");
        }
        Self { tx }
    }

    /// The viewer said it is still there.
    pub fn keep_alive(&self) {
        let _ = self.tx.send(Job::KeepAlive);
    }

    /// Applies one event; returns once the desktop has it.
    pub async fn apply(&self, ev: InputEvent) -> Result<(), InputError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Event(ev, reply))
            .map_err(|_| InputError::Failed("the input thread is gone".into()))?;
        done.await
            .map_err(|_| InputError::Failed("the input thread is gone".into()))?
    }
}

/// The desktop's input devices, opened on first use and kept for the session.
#[derive(Default)]
struct Devices {
    mouse: Option<Enigo>,
    keyboard: Option<Keyboard>,
}

impl Devices {
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
