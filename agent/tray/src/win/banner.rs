//! The session banner on Windows, as on Linux (`ui/banner.rs`): while anyone is connected to this
//! computer, a small frameless window stays on top at the top centre of the screen, says who and
//! how (beside the tray's red "session running" icon), and offers "End session". It never takes the keyboard, is not on the taskbar, and cannot
//! be closed while a session runs, so remote access is never invisible.

use super::sys::{Button, Control, Event, Font, Form, Icon, Kind, Place, measure, px};
use super::{BUTTON_HEIGHT, centre};
use crate::icon::{self, Look};
use crate::ipc::Ipc;
use crate::text;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tether_protocol::consent::{ActiveSession, LocalRequest};
use tracing::info;

pub const TITLE: &str = "Tether: session active";

const END: u16 = 400;
/// The icon's side, in 96-DPI pixels.
const ICON: i32 = 20;

pub struct Banner {
    form: Form,
    /// Kept alive for the picture showing it.
    _icon: Icon,
    dot: Control,
    text: Control,
    end: Control,
    /// The session the banner names and its button ends.
    shown: Rc<RefCell<Option<String>>>,
    /// What was last logged (session and button position), so each showing is logged once.
    logged: RefCell<Option<(String, String)>>,
}

impl Banner {
    /// Builds the (hidden) banner.
    pub fn new(ipc: Ipc) -> Result<Self, String> {
        let form = Form::create(Kind::Banner, TITLE)?;
        let side = px(ICON);
        let icon = Icon::from_rgba(&icon::rgba(Look::Active, side as u32), side as u32)?;
        let dot = form.picture(&icon, (0, 0, side, side));
        let (text, _) = form.label("", Font::Normal, 0, 0, px(100));
        let end = form.button(END, "End session", Button::Push, (0, 0, px(100), px(26)));
        let shown: Rc<RefCell<Option<String>>> = Rc::default();
        {
            let shown = shown.clone();
            form.on_event(move |event| {
                // Only the end of the session takes the banner away: Close is ignored.
                if event == Event::Command(END)
                    && let Some(id) = shown.borrow().clone()
                {
                    info!(id = %id, "user ended the session from the banner");
                    ipc.send(LocalRequest::End { id });
                }
            });
        }
        Ok(Self {
            form,
            _icon: icon,
            dot,
            text,
            end,
            shown,
            logged: RefCell::new(None),
        })
    }

    /// Shows the latest active session, or hides the banner when none runs.
    pub fn update(&self, active: &[ActiveSession], notices: &HashMap<String, String>) {
        match text::banner(active, notices) {
            None => {
                *self.shown.borrow_mut() = None;
                *self.logged.borrow_mut() = None;
                self.form.hide();
            }
            Some((session, line)) => {
                *self.shown.borrow_mut() = Some(session.id.clone());
                self.layout(&line);
                self.form.place(Place::TopCentre);
                self.form.show(false);
                let now = (session.id.clone(), centre(self.end));
                if self.logged.borrow().as_ref() != Some(&now) {
                    info!(id = %now.0, end_button = %now.1, "banner shown");
                    *self.logged.borrow_mut() = Some(now);
                }
            }
        }
    }

    /// One row: the icon, the text, the button.
    fn layout(&self, line: &str) {
        self.text.set_text(line);
        let pad = px(6);
        let gap = px(12);
        let (dot_w, dot_h) = (px(ICON), px(ICON));
        let (text_w, _) = measure(line, Font::Normal, None);
        let text_w = text_w.min(px(700));
        let (_, text_h) = measure(line, Font::Normal, Some(text_w));
        let (end_w, _) = measure("End session", Font::Normal, None);
        let end_w = end_w + px(24);
        let end_h = px(BUTTON_HEIGHT);
        let h = text_h.max(end_h).max(dot_h);
        let mut x = pad;
        self.dot.place(x, pad + (h - dot_h) / 2, dot_w, dot_h);
        x += dot_w + gap;
        self.text.place(x, pad + (h - text_h) / 2, text_w, text_h);
        x += text_w + gap;
        self.end.place(x, pad + (h - end_h) / 2, end_w, end_h);
        x += end_w + pad;
        self.form.set_client_size(x, h + 2 * pad);
    }
}
