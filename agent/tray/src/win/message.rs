//! A technician's message on Windows, as on Linux (`ui/message.rs`): who sent it, the text as
//! typed, a one-line reply box and a countdown. "Send reply" (or Enter) answers with the text;
//! "Dismiss", Escape or closing the window answer with nothing ("no reply"). When the time runs
//! out, or the agent says the message was answered elsewhere, the window just goes away.

use super::sys::{Button, Event, Font, Form, ID_CANCEL, ID_OK, Kind, Place};
use super::{Column, centre, technician_header};
use crate::ipc::Ipc;
use crate::msg::Post;
use crate::once::Answer;
use crate::text;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tether_protocol::consent::ChatMessage;
use tether_protocol::session::MAX_MESSAGE;
use tracing::{info, warn};

/// How often the countdown is recomputed; finer than a second so the label never lags by one.
const TICK: Duration = Duration::from_millis(200);

const SEND: u16 = 200;
const DISMISS: u16 = 201;
const ENTRY: u16 = 202;

pub struct MessageWindow {
    form: Form,
    answer: Rc<Answer>,
}

impl MessageWindow {
    /// Shows the message on top without taking the keyboard: whatever the user was typing (a
    /// password, say) must not land in the reply box and go to the technician with the next
    /// Enter.
    pub fn open(msg: &ChatMessage, ipc: Ipc, post: Post) -> Option<Self> {
        let received = Instant::now();
        let answer = Rc::new(Answer::new(msg.id.clone(), ipc, post));
        let form = match Form::create(
            Kind::Dialog { topmost: true },
            &text::message_title(&msg.technician),
        ) {
            Ok(f) => f,
            Err(e) => {
                warn!(id = %msg.id, "cannot show the technician's message: {e}");
                answer.reply(String::new());
                return None;
            }
        };
        let mut col = Column::new(form);
        technician_header(&mut col, &msg.technician, msg.role);
        col.label("sends you this message:", Font::Normal, 0);
        col.label(&msg.text, Font::Normal, 12);
        col.gap(6);
        let entry = col.edit(ENTRY, "Your reply (optional)", MAX_MESSAGE);
        let countdown = col.label(&text::reply_countdown(msg.seconds_left), Font::Normal, 0);
        col.gap(10);
        let buttons = col.buttons(&[
            (DISMISS, "Dismiss", Button::Push),
            (SEND, "Send reply", Button::Default),
        ]);
        let (dismiss, send) = (buttons[0], buttons[1]);
        col.finish();
        form.place(Place::Centre);

        let id = msg.id.clone();
        let total = msg.seconds_left;
        let shown = Cell::new(total);
        let a = answer.clone();
        form.on_event(move |event| match event {
            Event::Command(SEND | ID_OK) => {
                let reply = text::reply(&entry.text());
                if a.reply(reply.clone()) {
                    if reply.is_empty() {
                        info!(id = %id, "user sent an empty reply to the message");
                    } else {
                        info!(id = %id, bytes = reply.len(), "user replied to the message");
                    }
                }
                form.destroy();
            }
            Event::Command(DISMISS) => {
                if a.reply(String::new()) {
                    info!(id = %id, "user dismissed the message");
                }
                form.destroy();
            }
            Event::Command(ID_CANCEL) | Event::Close => {
                if a.reply(String::new()) {
                    info!(id = %id, "message window closed: no reply");
                }
                form.destroy();
            }
            Event::Destroyed if a.reply(String::new()) => {
                info!(id = %id, "message window closed: no reply");
            }
            Event::Timer => {
                if a.is_done() {
                    form.stop_timer();
                    return;
                }
                let left = text::seconds_remaining(total, received.elapsed());
                if left == 0 {
                    // The agent times the message out itself ("no reply"); nothing to send.
                    info!(id = %id, "message not answered in time");
                    a.drop_silently();
                    form.destroy();
                } else if left != shown.replace(left) {
                    countdown.set_text(&text::reply_countdown(left));
                }
            }
            _ => {}
        });
        form.start_timer(TICK.as_millis() as u32);
        form.show(false);
        info!(
            id = %msg.id,
            send_button = %centre(send),
            dismiss_button = %centre(dismiss),
            entry = %centre(entry),
            "message shown"
        );
        Some(Self { form, answer })
    }

    /// The agent closed the message (answered elsewhere, or its time ran out): close the window
    /// without replying.
    pub fn dismiss(&self) {
        self.answer.forget();
        self.form.destroy();
    }

    /// Answers "no reply" and closes (the tray is quitting).
    pub fn no_reply(&self) {
        self.answer.reply(String::new());
        self.form.destroy();
    }
}
