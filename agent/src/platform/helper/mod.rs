//! Desktops served by a helper process the agent starts where the user's desktop is, over
//! `tether_protocol::helper`: Wayland sessions (`tether-wayland`, run as the desktop user) and,
//! on Windows, the signed-in user's session when the agent is a service in session 0
//! (`tether-agent desktop-helper`). [`client`] runs the process; [`HelperDesktop`] turns its
//! replies into screens, input, pointer and clipboard.
//!
//! The helper runs as the desktop user, who can drive it at will, so its replies are untrusted:
//! sizes are checked before anything is allocated (`FrameHeader::check`) and damage clipped.

pub mod client;
pub mod serve;

use crate::platform::{
    Clipboard, ClipboardError, Damage, Desktop, DesktopKind, InputError, InputSink, Pointer,
    PointerImage, ScreenError, ScreenSource,
};
use client::{Helper, Launch, Reply};
use std::collections::HashMap;
use std::sync::Arc;
use tether_protocol::helper::{FromHelper, ToHelper};
use tether_protocol::session::{DisplayInfo, InputEvent};

/// A desktop served by a helper process.
pub struct HelperDesktop {
    kind: DesktopKind,
    /// The desktop user, where it is a local account (Wayland).
    owner: Option<u32>,
    helper: Arc<Helper>,
}

impl HelperDesktop {
    pub fn new(kind: DesktopKind, owner: Option<u32>, launch: Box<dyn Launch>) -> Self {
        HelperDesktop {
            kind,
            owner,
            helper: Arc::new(Helper::new(launch)),
        }
    }
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Desktop for HelperDesktop {
    fn kind(&self) -> DesktopKind {
        self.kind
    }

    fn screens(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        match self.helper.request(&ToHelper::Displays) {
            Ok(Reply::Message(FromHelper::Displays(d))) => Ok(d),
            Ok(Reply::Message(FromHelper::Error(e))) => Err(ScreenError::Capture(io(e))),
            Ok(other) => Err(ScreenError::Capture(io(format!(
                "unexpected reply from the desktop helper: {other}"
            )))),
            Err(e) => Err(ScreenError::NoDisplay(io(e))),
        }
    }

    fn screen(&self) -> Box<dyn ScreenSource> {
        Box::new(HelperScreen {
            helper: self.helper.clone(),
            last: HashMap::new(),
            pending: None,
        })
    }

    fn pointer(&self) -> Option<Box<dyn Pointer>> {
        Some(Box::new(HelperPointer {
            helper: self.helper.clone(),
        }))
    }

    fn input(&self) -> Box<dyn InputSink> {
        Box::new(HelperInput {
            helper: self.helper.clone(),
        })
    }

    fn clipboard(&self) -> &dyn Clipboard {
        self
    }

    fn owner(&self) -> Option<u32> {
        self.owner
    }

    /// Through the desktop portal, the desktop asks the user which screen to share the first
    /// time (and whenever its restore token is not accepted): the banner says why.
    fn notice(&self) -> Option<String> {
        (self.helper.backend().as_deref() == Some("portal")).then(|| {
            "Your desktop may now ask which screen to share with Tether: choose one to let the technician see it, or cancel to refuse.".to_string()
        })
    }
}

impl Clipboard for HelperDesktop {
    fn get(&self) -> Result<String, ClipboardError> {
        match self.helper.request(&ToHelper::GetClipboard) {
            Ok(Reply::Message(FromHelper::Clipboard(t))) => Ok(t),
            Ok(Reply::Message(FromHelper::Error(e))) => Err(ClipboardError::Failed(e.to_string())),
            Ok(other) => Err(ClipboardError::Failed(format!("unexpected reply {other}"))),
            Err(e) => Err(ClipboardError::Unavailable(e.to_string())),
        }
    }

    fn set(&self, text: String) -> Result<(), ClipboardError> {
        match self.helper.request(&ToHelper::SetClipboard(text)) {
            Ok(Reply::Message(FromHelper::Done)) => Ok(()),
            Ok(Reply::Message(FromHelper::Error(e))) => Err(ClipboardError::Failed(e.to_string())),
            Ok(other) => Err(ClipboardError::Failed(format!("unexpected reply {other}"))),
            Err(e) => Err(ClipboardError::Unavailable(e.to_string())),
        }
    }
}

/// What the helper gave for a display.
enum Fetched {
    Frame(u32, u32, Vec<u8>),
    /// Nothing changed since the last frame (kept in `HelperScreen::last`).
    Unchanged,
    Failed(String),
}

/// A display's frames. The helper says what changed with each frame, so [`ScreenSource::damage`]
/// fetches the frame and [`ScreenSource::capture`] hands it over; an unchanged display is not
/// copied unless the capture is asked for anyway.
struct HelperScreen {
    helper: Arc<Helper>,
    /// The last frame of each display (the stream compares against its own copy; this one
    /// stands for the screen when nothing changed).
    last: HashMap<u32, (u32, u32, Vec<u8>)>,
    /// What `damage` fetched for the `capture` that follows.
    pending: Option<(u32, Fetched)>,
}

impl HelperScreen {
    fn fetch(&mut self, display: u32) -> (Damage, Fetched) {
        match self.helper.request(&ToHelper::Capture { display }) {
            Ok(Reply::Frame(header, pixels)) => {
                let damage = match header.damage {
                    Some(rects) => Damage::Areas(rects),
                    None => Damage::Unknown,
                };
                let damage = match self.last.get(&display) {
                    Some((w, h, _)) if (*w, *h) == (header.width, header.height) => damage,
                    // A new size: everything changed.
                    _ => Damage::Unknown,
                };
                self.last
                    .insert(display, (header.width, header.height, pixels.clone()));
                (damage, Fetched::Frame(header.width, header.height, pixels))
            }
            Ok(Reply::Message(FromHelper::Unchanged)) if self.last.contains_key(&display) => {
                (Damage::Areas(Vec::new()), Fetched::Unchanged)
            }
            Ok(Reply::Message(FromHelper::Unchanged)) => (
                Damage::Unknown,
                Fetched::Failed("the desktop helper said unchanged before any frame".into()),
            ),
            Ok(Reply::Message(FromHelper::Error(e))) => {
                (Damage::Unknown, Fetched::Failed(e.to_string()))
            }
            Ok(other) => (
                Damage::Unknown,
                Fetched::Failed(format!("unexpected reply from the desktop helper: {other}")),
            ),
            Err(e) => (Damage::Unknown, Fetched::Failed(e.to_string())),
        }
    }
}

impl ScreenSource for HelperScreen {
    fn displays(&self) -> Result<Vec<DisplayInfo>, ScreenError> {
        match self.helper.request(&ToHelper::Displays) {
            Ok(Reply::Message(FromHelper::Displays(d))) => Ok(d),
            Ok(other) => Err(ScreenError::Capture(io(format!(
                "unexpected reply {other}"
            )))),
            Err(e) => Err(ScreenError::NoDisplay(io(e))),
        }
    }

    fn damage(&mut self, display: u32) -> Damage {
        let (damage, fetched) = self.fetch(display);
        self.pending = Some((display, fetched));
        damage
    }

    fn capture(&mut self, display: u32) -> Result<(u32, u32, Vec<u8>), ScreenError> {
        let fetched = match self.pending.take() {
            Some((d, f)) if d == display => f,
            _ => self.fetch(display).1,
        };
        match fetched {
            Fetched::Frame(w, h, p) => Ok((w, h, p)),
            Fetched::Unchanged => match self.last.get(&display) {
                Some((w, h, p)) => Ok((*w, *h, p.clone())),
                None => Err(ScreenError::Capture(io("no frame yet"))),
            },
            Fetched::Failed(e) => Err(ScreenError::Capture(io(e))),
        }
    }
}

struct HelperPointer {
    helper: Arc<Helper>,
}

impl Pointer for HelperPointer {
    fn poll(&mut self) -> Option<((i32, i32), Option<PointerImage>)> {
        match self.helper.request(&ToHelper::Pointer) {
            Ok(Reply::Message(FromHelper::Pointer(Some(p)))) => {
                let image = p.image.filter(|i| i.is_valid()).map(|i| PointerImage {
                    width: i.width,
                    height: i.height,
                    hot_x: i.hot_x,
                    hot_y: i.hot_y,
                    rgba: i.rgba,
                });
                Some(((p.x, p.y), image))
            }
            _ => None,
        }
    }
}

struct HelperInput {
    helper: Arc<Helper>,
}

impl InputSink for HelperInput {
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        match self.helper.request(&ToHelper::Input(event.clone())) {
            Ok(Reply::Message(FromHelper::Done)) => Ok(()),
            Ok(Reply::Message(FromHelper::Error(e))) => Err(InputError::Failed(e.to_string())),
            Ok(other) => Err(InputError::Failed(format!("unexpected reply {other}"))),
            Err(e) => Err(InputError::Open(e.to_string())),
        }
    }

    fn release_if_held(&mut self) {
        if self.helper.is_running() {
            let _ = self
                .helper
                .request(&ToHelper::Input(InputEvent::ReleaseKeys));
        }
    }
}
