//! A technician's message (`tether say`): one window per message, showing who sent it (from their
//! certificate), the text as typed (plain, never markup), a one-line reply box and a countdown.
//! "Send reply" (or Enter in the box) answers with the text; "Dismiss", Escape or closing the
//! window answer with nothing, which the agent reports as "no reply". When the time runs out, or
//! the agent says the message was answered elsewhere, the window just goes away: the agent has
//! already closed the message itself.

use super::{attention_window, label, point, report_layout, technician_header};
use crate::ipc::Ipc;
use crate::msg::Post;
use crate::once::Answer;
use crate::text;
use gtk::glib;
use gtk::prelude::*;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tether_protocol::consent::ChatMessage;
use tether_protocol::session::MAX_MESSAGE;
use tracing::info;

/// How often the countdown is recomputed; finer than a second so the label never lags by one.
const TICK: Duration = Duration::from_millis(200);

pub struct MessageWindow {
    window: gtk::Window,
    answer: Rc<Answer>,
}

impl MessageWindow {
    pub fn open(msg: &ChatMessage, ipc: Ipc, post: Post) -> Self {
        let received = Instant::now();
        let answer = Rc::new(Answer::new(msg.id.clone(), ipc, post));

        let window = attention_window(&text::message_title(&msg.technician));
        // Appearing must not take the keyboard: whatever the user was typing (a password, say)
        // must not land in the reply box and go to the technician with the next Enter.
        window.set_focus_on_map(false);

        let column = gtk::Box::new(gtk::Orientation::Vertical, 8);
        technician_header(&column, &msg.technician, msg.role);
        column.add(&label("sends you this message:"));
        let body = label(&msg.text);
        // Long words (links, paths) wrap too instead of widening the window.
        body.set_line_wrap_mode(gtk::pango::WrapMode::WordChar);
        body.set_margin_start(12);
        body.set_margin_end(12);
        body.set_margin_top(4);
        body.set_margin_bottom(4);
        column.add(&body);

        let entry = gtk::Entry::new();
        entry.set_placeholder_text(Some("Your reply (optional)"));
        // Characters here; the reply is also cut to MAX_MESSAGE bytes when sent.
        entry.set_max_length(i32::try_from(MAX_MESSAGE).unwrap_or(1000));
        entry.set_activates_default(true);
        entry.set_margin_top(6);
        column.add(&entry);

        let countdown = label(&text::reply_countdown(msg.seconds_left));
        column.add(&countdown);

        let buttons = gtk::ButtonBox::new(gtk::Orientation::Horizontal);
        buttons.set_layout(gtk::ButtonBoxStyle::End);
        buttons.set_spacing(8);
        buttons.set_margin_top(10);
        let dismiss = gtk::Button::with_label("Dismiss");
        let send = gtk::Button::with_label("Send reply");
        buttons.add(&dismiss);
        buttons.add(&send);
        column.add(&buttons);
        window.add(&column);

        send.style_context().add_class("suggested-action");
        send.set_can_default(true);
        window.set_default(Some(&send));
        window.set_focus(Some(&entry));

        let id = msg.id.clone();
        {
            let a = answer.clone();
            let w = window.downgrade();
            let entry = entry.downgrade();
            let id = id.clone();
            send.connect_clicked(move |_| {
                let typed = entry.upgrade().map(|e| e.text()).unwrap_or_default();
                let reply = text::reply(&typed);
                if a.reply(reply.clone()) {
                    if reply.is_empty() {
                        info!(id = %id, "user sent an empty reply to the message");
                    } else {
                        info!(id = %id, bytes = reply.len(), "user replied to the message");
                    }
                }
                if let Some(w) = w.upgrade() {
                    w.close();
                }
            });
        }
        {
            let a = answer.clone();
            let w = window.downgrade();
            let id = id.clone();
            dismiss.connect_clicked(move |_| {
                if a.reply(String::new()) {
                    info!(id = %id, "user dismissed the message");
                }
                if let Some(w) = w.upgrade() {
                    w.close();
                }
            });
        }
        {
            let a = answer.clone();
            let id = id.clone();
            window.connect_delete_event(move |_, _| {
                if a.reply(String::new()) {
                    info!(id = %id, "message window closed: no reply");
                }
                glib::Propagation::Proceed
            });
        }
        {
            let a = answer.clone();
            let w = window.downgrade();
            let total = msg.seconds_left;
            let mut shown = total;
            glib::timeout_add_local(TICK, move || {
                let Some(w) = w.upgrade() else {
                    return glib::ControlFlow::Break;
                };
                if a.is_done() {
                    return glib::ControlFlow::Break;
                }
                let left = text::seconds_remaining(total, received.elapsed());
                if left == 0 {
                    // The agent times the message out itself ("no reply"); nothing to send.
                    info!(id = %a.id, "message not answered in time");
                    a.drop_silently();
                    w.close();
                    return glib::ControlFlow::Break;
                }
                if left != shown {
                    shown = left;
                    countdown.set_text(&text::reply_countdown(left));
                }
                glib::ControlFlow::Continue
            });
        }

        let key_id = id.clone();
        let watched: [gtk::Widget; 3] = [send.upcast(), dismiss.upcast(), entry.upcast()];
        report_layout(
            &window,
            &watched,
            move || Some(key_id.clone()),
            |id, c| {
                info!(
                    id = %id,
                    send_button = %point(c[0]),
                    dismiss_button = %point(c[1]),
                    entry = %point(c[2]),
                    "message shown"
                );
            },
        );
        // Shown, not presented: see set_focus_on_map above.
        window.show_all();
        Self { window, answer }
    }

    /// The agent closed the message (answered elsewhere, or its time ran out): close the window
    /// without replying.
    pub fn dismiss(&self) {
        self.answer.forget();
        self.window.close();
    }

    /// Answers "no reply" and closes (the tray is quitting).
    pub fn no_reply(&self) {
        self.answer.reply(String::new());
        self.window.close();
    }
}
