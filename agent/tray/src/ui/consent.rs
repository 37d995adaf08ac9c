//! The consent dialog: one window per session request, showing who asks (from their
//! certificate), what for and with which permissions, and counting down to the automatic denial.
//! Deny is the default everywhere: the focused button, closing the window, Escape, and the
//! countdown running out all deny.

use super::{attention_window, emphasize, label, point, report_layout, technician_header};
use crate::ipc::Ipc;
use crate::msg::Post;
use crate::once::Decision;
use crate::text;
use gtk::glib;
use gtk::prelude::*;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tether_protocol::consent::{LocalRequest, Prompt};
use tracing::info;

pub const TITLE: &str = "Tether: remote support request";

/// How often the countdown is recomputed; finer than a second so the label never lags by one.
const TICK: Duration = Duration::from_millis(200);

pub struct ConsentDialog {
    window: gtk::Window,
    decision: Rc<Decision>,
}

impl ConsentDialog {
    pub fn open(prompt: &Prompt, ipc: Ipc, post: Post) -> Self {
        let received = Instant::now();
        let decision = Rc::new(Decision::new(prompt.id.clone(), ipc, post));

        let window = attention_window(TITLE);
        let column = gtk::Box::new(gtk::Orientation::Vertical, 8);
        technician_header(&column, &prompt.technician, prompt.role);
        let wants = label(&text::wants(prompt.permissions));
        emphasize(&wants, 1.0);
        column.add(&wants);
        column.add(&label(&text::reason(&prompt.reason)));
        column.add(&label(&text::ticket(&prompt.ticket)));
        column.add(&label("They will be able to:"));
        for line in text::permission_lines(prompt.permissions) {
            let l = label(&format!("•  {line}"));
            l.set_margin_start(12);
            if line == text::ROOT_LINE {
                // Root lifts every limit of the user's own account: it must not read as one
                // more bullet among the others.
                emphasize(&l, 1.0);
            }
            column.add(&l);
        }
        for line in text::details(prompt) {
            column.add(&label(&line));
        }
        let countdown = label(&text::countdown(prompt.seconds_left));
        countdown.set_margin_top(6);
        column.add(&countdown);

        let buttons = gtk::ButtonBox::new(gtk::Orientation::Horizontal);
        buttons.set_layout(gtk::ButtonBoxStyle::End);
        buttons.set_spacing(8);
        buttons.set_margin_top(10);
        let deny = gtk::Button::with_label("Deny");
        let allow = gtk::Button::with_label("Allow");
        buttons.add(&deny);
        buttons.add(&allow);
        column.add(&buttons);
        window.add(&column);

        // Enter on a freshly popped-up dialog must not grant access: Deny is default and focused.
        deny.set_can_default(true);
        window.set_default(Some(&deny));
        window.set_focus(Some(&deny));

        let id = prompt.id.clone();
        {
            let d = decision.clone();
            let w = window.downgrade();
            let id = id.clone();
            allow.connect_clicked(move |_| {
                if d.make(Some(LocalRequest::Approve { id: id.clone() })) {
                    info!(id = %id, "user allowed the session");
                }
                if let Some(w) = w.upgrade() {
                    w.close();
                }
            });
        }
        {
            let d = decision.clone();
            let w = window.downgrade();
            let id = id.clone();
            deny.connect_clicked(move |_| {
                if d.deny() {
                    info!(id = %id, "user denied the session");
                }
                if let Some(w) = w.upgrade() {
                    w.close();
                }
            });
        }
        {
            let d = decision.clone();
            let id = id.clone();
            window.connect_delete_event(move |_, _| {
                if d.deny() {
                    info!(id = %id, "consent dialog closed: session denied");
                }
                glib::Propagation::Proceed
            });
        }
        {
            let d = decision.clone();
            let w = window.downgrade();
            let total = prompt.seconds_left;
            let mut shown = total;
            glib::timeout_add_local(TICK, move || {
                let Some(w) = w.upgrade() else {
                    return glib::ControlFlow::Break;
                };
                if d.is_made() {
                    return glib::ControlFlow::Break;
                }
                let left = text::seconds_remaining(total, received.elapsed());
                if left == 0 {
                    if d.deny() {
                        info!(id = %d.id, "no answer in time: session denied");
                    }
                    w.close();
                    return glib::ControlFlow::Break;
                }
                if left != shown {
                    shown = left;
                    countdown.set_text(&text::countdown(left));
                }
                glib::ControlFlow::Continue
            });
        }

        let key_id = id.clone();
        report_layout(
            &window,
            &[allow, deny],
            move || Some(key_id.clone()),
            |id, c| {
                info!(
                    id = %id,
                    allow_button = %point(c[0]),
                    deny_button = %point(c[1]),
                    "consent dialog shown"
                );
            },
        );
        window.show_all();
        window.present();
        Self { window, decision }
    }

    /// The agent closed the request (answered elsewhere, or it timed out): close the dialog
    /// without answering.
    pub fn dismiss(&self) {
        self.decision.forget();
        self.window.close();
    }

    /// Denies and closes (the tray is quitting).
    pub fn deny(&self) {
        self.decision.deny();
        self.window.close();
    }
}
