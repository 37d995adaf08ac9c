//! Input events lowered to the RemoteDesktop portal's `Notify*` calls, free of I/O.
//!
//! Keys go as keysyms (`NotifyKeyboardKeysym`: the portal's compositor finds the key, as in
//! [`KeyMode::Translate`]) unless the viewer asked for the physical key and knows it: then as
//! the evdev code (`NotifyKeyboardKeycode` takes evdev codes, the same numbers as
//! [`KeyEvent::code`]). Pointer positions are relative to the display being viewed, which the
//! portal expresses as a position inside that display's stream
//! (`NotifyPointerMotionAbsolute(node, x, y)`). Buttons are evdev codes; the wheel goes as
//! discrete steps, positive = down/right as in libinput.

use super::machine::StreamInfo;
use std::collections::BTreeSet;
use tether_protocol::helper::{HelperError, key_events};
use tether_protocol::keys::{KeyEvent, KeyMode};
use tether_protocol::session::{InputEvent, MouseButton};

/// evdev `BTN_LEFT`, `BTN_RIGHT`, `BTN_MIDDLE`.
pub const BTN_LEFT: i32 = 0x110;
pub const BTN_RIGHT: i32 = 0x111;
pub const BTN_MIDDLE: i32 = 0x112;

/// One portal call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    Keysym {
        keysym: i32,
        down: bool,
    },
    Keycode {
        code: i32,
        down: bool,
    },
    Motion {
        node: u32,
        x: f64,
        y: f64,
    },
    Button {
        code: i32,
        down: bool,
    },
    /// `vertical` false: horizontal.
    Axis {
        vertical: bool,
        steps: i32,
    },
}

/// A key this session holds down, to release when asked ([`InputEvent::ReleaseKeys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HeldKey {
    Keysym(i32),
    Keycode(i32),
}

/// The keys and buttons held down through this session.
#[derive(Debug, Default)]
pub struct Held {
    keys: BTreeSet<HeldKey>,
    buttons: BTreeSet<i32>,
}

impl Held {
    fn note(&mut self, call: &Call) {
        let (key, down) = match *call {
            Call::Keysym { keysym, down } => (HeldKey::Keysym(keysym), down),
            Call::Keycode { code, down } => (HeldKey::Keycode(code), down),
            Call::Button { code, down } => {
                if down {
                    self.buttons.insert(code);
                } else {
                    self.buttons.remove(&code);
                }
                return;
            }
            _ => return,
        };
        if down {
            self.keys.insert(key);
        } else {
            self.keys.remove(&key);
        }
    }

    /// The calls releasing everything held, and forgets it.
    pub fn release_all(&mut self) -> Vec<Call> {
        let keys = std::mem::take(&mut self.keys)
            .into_iter()
            .rev()
            .map(|k| match k {
                HeldKey::Keysym(keysym) => Call::Keysym {
                    keysym,
                    down: false,
                },
                HeldKey::Keycode(code) => Call::Keycode { code, down: false },
            });
        let buttons = std::mem::take(&mut self.buttons)
            .into_iter()
            .map(|code| Call::Button { code, down: false });
        keys.chain(buttons).collect()
    }
}

fn key_call(k: &KeyEvent) -> Result<Call, HelperError> {
    if k.mode == KeyMode::Physical && k.code != 0 {
        return Ok(Call::Keycode {
            code: i32::from(k.code),
            down: k.down,
        });
    }
    let keysym = i32::try_from(k.keysym)
        .map_err(|_| HelperError::Input(format!("keysym {:#x} out of range", k.keysym)))?;
    Ok(Call::Keysym {
        keysym,
        down: k.down,
    })
}

pub fn button_code(b: MouseButton) -> i32 {
    match b {
        MouseButton::Left => BTN_LEFT,
        MouseButton::Right => BTN_RIGHT,
        MouseButton::Middle => BTN_MIDDLE,
    }
}

/// Motion to (`x`, `y`) of `stream`, kept inside it when its size is known.
fn motion(stream: Option<&StreamInfo>, x: i32, y: i32) -> Result<Call, HelperError> {
    let s = stream.ok_or_else(|| HelperError::Input("no screen is shared".into()))?;
    let clamp = |v: i32, side: u32| {
        let v = f64::from(v.max(0));
        if side == 0 {
            v
        } else {
            v.min(f64::from(side) - 1.0)
        }
    };
    Ok(Call::Motion {
        node: s.node_id,
        x: clamp(x, s.size.0),
        y: clamp(y, s.size.1),
    })
}

/// The portal calls for `event`, pointer positions relative to `stream` (the display viewed).
/// `held` learns what goes down and up.
pub fn lower(
    event: &InputEvent,
    stream: Option<&StreamInfo>,
    held: &mut Held,
) -> Result<Vec<Call>, HelperError> {
    let calls = match event {
        InputEvent::MouseMove { x, y } => vec![motion(stream, *x, *y)?],
        InputEvent::Button { button, down } => vec![Call::Button {
            code: button_code(*button),
            down: *down,
        }],
        InputEvent::Click { x, y, button } => {
            let code = button_code(*button);
            vec![
                motion(stream, *x, *y)?,
                Call::Button { code, down: true },
                Call::Button { code, down: false },
            ]
        }
        InputEvent::Scroll { dx, dy } => {
            let mut v = Vec::new();
            if *dy != 0 {
                v.push(Call::Axis {
                    vertical: true,
                    steps: *dy,
                });
            }
            if *dx != 0 {
                v.push(Call::Axis {
                    vertical: false,
                    steps: *dx,
                });
            }
            v
        }
        InputEvent::ReleaseKeys => return Ok(held.release_all()),
        InputEvent::Key { .. }
        | InputEvent::Text(_)
        | InputEvent::Combo(_)
        | InputEvent::KeyEvent(_) => key_events(event)
            .iter()
            .map(key_call)
            .collect::<Result<_, _>>()?,
    };
    for c in &calls {
        held.note(c);
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::keys::sym;
    use tether_protocol::session::Key;

    const S: StreamInfo = StreamInfo {
        node_id: 42,
        position: (1280, 0),
        size: (1024, 768),
    };

    #[test]
    fn keys_go_as_keysyms_or_evdev_codes() {
        let mut held = Held::default();
        let phys = InputEvent::KeyEvent(KeyEvent {
            keysym: 0x61,
            code: 30,
            down: true,
            mode: KeyMode::Physical,
        });
        assert_eq!(
            lower(&phys, None, &mut held).unwrap(),
            vec![Call::Keycode {
                code: 30,
                down: true
            }]
        );
        let phys_unknown = InputEvent::KeyEvent(KeyEvent {
            keysym: 0x61,
            code: 0,
            down: true,
            mode: KeyMode::Physical,
        });
        assert_eq!(
            lower(&phys_unknown, None, &mut held).unwrap(),
            vec![Call::Keysym {
                keysym: 0x61,
                down: true
            }],
            "physical without a code falls back to the keysym"
        );
        let translate = InputEvent::KeyEvent(KeyEvent {
            keysym: sym::RETURN,
            code: 28,
            down: false,
            mode: KeyMode::Translate,
        });
        assert_eq!(
            lower(&translate, None, &mut held).unwrap(),
            vec![Call::Keysym {
                keysym: 0xff0d,
                down: false
            }]
        );
        let text = lower(&InputEvent::Text("é".into()), None, &mut held).unwrap();
        assert_eq!(
            text,
            vec![
                Call::Keysym {
                    keysym: 0xe9,
                    down: true
                },
                Call::Keysym {
                    keysym: 0xe9,
                    down: false
                }
            ]
        );
        let bad = InputEvent::KeyEvent(KeyEvent {
            keysym: u32::MAX,
            code: 0,
            down: true,
            mode: KeyMode::Translate,
        });
        assert!(matches!(
            lower(&bad, None, &mut held),
            Err(HelperError::Input(_))
        ));
    }

    #[test]
    fn combos_and_release_of_held_keys() {
        let mut held = Held::default();
        let combo = lower(
            &InputEvent::Combo(vec![Key::Control, Key::Alt, Key::Delete]),
            None,
            &mut held,
        )
        .unwrap();
        assert_eq!(combo.len(), 6);
        assert!(held.release_all().is_empty(), "a combo leaves nothing held");
        lower(
            &InputEvent::Key {
                key: Key::Shift,
                down: true,
            },
            None,
            &mut held,
        )
        .unwrap();
        lower(
            &InputEvent::KeyEvent(KeyEvent {
                keysym: 0x61,
                code: 30,
                down: true,
                mode: KeyMode::Physical,
            }),
            None,
            &mut held,
        )
        .unwrap();
        lower(
            &InputEvent::Button {
                button: MouseButton::Left,
                down: true,
            },
            Some(&S),
            &mut held,
        )
        .unwrap();
        let released = lower(&InputEvent::ReleaseKeys, None, &mut held).unwrap();
        assert_eq!(
            released,
            vec![
                Call::Keycode {
                    code: 30,
                    down: false
                },
                Call::Keysym {
                    keysym: sym::SHIFT_L as i32,
                    down: false
                },
                Call::Button {
                    code: BTN_LEFT,
                    down: false
                },
            ]
        );
        assert!(
            lower(&InputEvent::ReleaseKeys, None, &mut held)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn pointer_goes_to_the_viewed_stream_inside_its_bounds() {
        let mut held = Held::default();
        assert_eq!(
            lower(&InputEvent::MouseMove { x: 10, y: 20 }, Some(&S), &mut held).unwrap(),
            vec![Call::Motion {
                node: 42,
                x: 10.0,
                y: 20.0
            }]
        );
        assert_eq!(
            lower(
                &InputEvent::MouseMove { x: 5000, y: -3 },
                Some(&S),
                &mut held
            )
            .unwrap(),
            vec![Call::Motion {
                node: 42,
                x: 1023.0,
                y: 0.0
            }]
        );
        assert_eq!(
            lower(
                &InputEvent::Click {
                    x: 1,
                    y: 2,
                    button: MouseButton::Right
                },
                Some(&S),
                &mut held
            )
            .unwrap(),
            vec![
                Call::Motion {
                    node: 42,
                    x: 1.0,
                    y: 2.0
                },
                Call::Button {
                    code: BTN_RIGHT,
                    down: true
                },
                Call::Button {
                    code: BTN_RIGHT,
                    down: false
                },
            ]
        );
        assert!(matches!(
            lower(&InputEvent::MouseMove { x: 1, y: 1 }, None, &mut held),
            Err(HelperError::Input(_))
        ));
        assert_eq!(button_code(MouseButton::Middle), 0x112);
    }

    #[test]
    fn the_wheel_goes_in_discrete_steps() {
        let mut held = Held::default();
        assert_eq!(
            lower(&InputEvent::Scroll { dx: -1, dy: 2 }, None, &mut held).unwrap(),
            vec![
                Call::Axis {
                    vertical: true,
                    steps: 2
                },
                Call::Axis {
                    vertical: false,
                    steps: -1
                }
            ]
        );
        assert!(
            lower(&InputEvent::Scroll { dx: 0, dy: 0 }, None, &mut held)
                .unwrap()
                .is_empty()
        );
    }
}
