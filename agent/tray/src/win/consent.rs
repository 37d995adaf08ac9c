//! The consent dialog on Windows: the same content and rules as on Linux (`ui/consent.rs`).
//! Deny is the default everywhere: the focused button, Enter, Escape, closing the window, and the
//! countdown running out all deny.

use super::sys::{Button, Event, Font, Form, ID_CANCEL, ID_OK, Kind, Place};
use super::{Column, centre, technician_header};
use crate::ipc::Ipc;
use crate::msg::Post;
use crate::once::Decision;
use crate::text;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tether_protocol::consent::{LocalRequest, Prompt};
use tracing::{info, warn};

pub const TITLE: &str = "Tether: remote support request";

/// How often the countdown is recomputed; finer than a second so the label never lags by one.
const TICK: Duration = Duration::from_millis(200);

const ALLOW: u16 = 100;
const DENY: u16 = 101;

pub struct ConsentDialog {
    form: Form,
    decision: Rc<Decision>,
}

impl ConsentDialog {
    /// Shows the dialog on top with the keyboard; `None` (after denying) if Windows cannot make
    /// the window.
    pub fn open(prompt: &Prompt, ipc: Ipc, post: Post) -> Option<Self> {
        let received = Instant::now();
        let decision = Rc::new(Decision::new(prompt.id.clone(), ipc, post));
        let form = match Form::create(Kind::Dialog { topmost: true }, TITLE) {
            Ok(f) => f,
            Err(e) => {
                warn!(id = %prompt.id, "cannot show the consent dialog ({e}): session denied");
                decision.deny();
                return None;
            }
        };

        let mut col = Column::new(form);
        technician_header(&mut col, &prompt.technician, prompt.role);
        col.label(&text::wants(prompt.permissions), Font::Bold, 0);
        col.label(&text::reason(&prompt.reason), Font::Normal, 0);
        col.label(&text::ticket(&prompt.ticket), Font::Normal, 0);
        col.label("They will be able to:", Font::Normal, 0);
        for line in text::permission_lines(prompt.permissions) {
            // Root lifts every limit of the user's own account: it must not read as one more
            // bullet among the others.
            let font = if line == text::ROOT_LINE {
                Font::Bold
            } else {
                Font::Normal
            };
            col.label(&format!("•  {line}"), font, 12);
        }
        for line in text::details(prompt) {
            col.label(&line, Font::Normal, 0);
        }
        col.gap(6);
        let countdown = col.label(&text::countdown(prompt.seconds_left), Font::Normal, 0);
        col.gap(10);
        let buttons = col.buttons(&[
            (DENY, "Deny", Button::Default),
            (ALLOW, "Allow", Button::Push),
        ]);
        let (deny, allow) = (buttons[0], buttons[1]);
        col.finish();
        form.place(Place::Centre);

        let id = prompt.id.clone();
        let total = prompt.seconds_left;
        let shown = Cell::new(total);
        let d = decision.clone();
        form.on_event(move |event| match event {
            Event::Command(ALLOW) => {
                if d.make(Some(LocalRequest::Approve { id: id.clone() })) {
                    info!(id = %id, "user allowed the session");
                }
                form.destroy();
            }
            // Enter on a freshly popped-up dialog must not grant access.
            Event::Command(DENY | ID_OK) => {
                if d.deny() {
                    info!(id = %id, "user denied the session");
                }
                form.destroy();
            }
            Event::Command(ID_CANCEL) | Event::Close => {
                if d.deny() {
                    info!(id = %id, "consent dialog closed: session denied");
                }
                form.destroy();
            }
            Event::Timer => {
                if d.is_made() {
                    form.stop_timer();
                    return;
                }
                let left = text::seconds_remaining(total, received.elapsed());
                if left == 0 {
                    if d.deny() {
                        info!(id = %id, "no answer in time: session denied");
                    }
                    form.destroy();
                } else if left != shown.replace(left) {
                    countdown.set_text(&text::countdown(left));
                }
            }
            // However else the window goes (the session ends, the tray quits): deny.
            Event::Destroyed if d.deny() => {
                info!(id = %id, "consent dialog closed: session denied");
            }
            _ => {}
        });
        form.start_timer(TICK.as_millis() as u32);
        form.show(true);
        deny.focus();
        info!(
            id = %prompt.id,
            allow_button = %centre(allow),
            deny_button = %centre(deny),
            "consent dialog shown"
        );
        Some(Self { form, decision })
    }

    /// The agent closed the request (answered elsewhere, or it timed out): close the dialog
    /// without answering.
    pub fn dismiss(&self) {
        self.decision.forget();
        self.form.destroy();
    }

    /// Denies and closes (the tray is quitting).
    pub fn deny(&self) {
        self.decision.deny();
        self.form.destroy();
    }
}
