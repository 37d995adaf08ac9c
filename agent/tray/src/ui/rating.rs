//! After a session ends, asks the user how it went: 1 to 5 and an optional comment. The window is
//! independent of everything else (no modal grab) and closing it skips the rating.

use super::{emphasize, label, point, report_layout};
use crate::ipc::Ipc;
use crate::text;
use gtk::glib;
use gtk::prelude::*;
use std::cell::Cell;
use std::rc::Rc;
use tether_protocol::consent::{LocalRequest, MAX_COMMENT};
use tracing::info;

pub const TITLE: &str = "Tether: rate your support session";

/// What each score means, shown as the button's tooltip.
const SCORES: [&str; 5] = ["poor", "fair", "good", "very good", "excellent"];

pub fn show(ipc: Ipc, id: &str, technician: &str) {
    let window = gtk::Window::new(gtk::WindowType::Toplevel);
    window.set_title(TITLE);
    window.set_position(gtk::WindowPosition::Center);
    window.set_resizable(false);
    window.set_border_width(18);

    let column = gtk::Box::new(gtk::Orientation::Vertical, 10);
    let question = label(&text::rating_question(technician));
    emphasize(&question, 1.2);
    column.add(&question);
    column.add(&label("1 = poor, 5 = excellent"));

    let stars_row = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    let stars: Vec<gtk::ToggleButton> = (1..=5u8)
        .map(|n| {
            let b = gtk::ToggleButton::with_label(&n.to_string());
            b.set_tooltip_text(Some(&format!("{n} — {}", SCORES[usize::from(n - 1)])));
            stars_row.add(&b);
            b
        })
        .collect();
    column.add(&stars_row);

    let comment = gtk::Entry::new();
    comment.set_placeholder_text(Some("Comment (optional)"));
    comment.set_max_length(i32::try_from(MAX_COMMENT).unwrap_or(500));
    column.add(&comment);

    let buttons = gtk::ButtonBox::new(gtk::Orientation::Horizontal);
    buttons.set_layout(gtk::ButtonBoxStyle::End);
    buttons.set_spacing(8);
    let skip = gtk::Button::with_label("Skip");
    let send = gtk::Button::with_label("Send");
    send.set_sensitive(false);
    buttons.add(&skip);
    buttons.add(&send);
    column.add(&buttons);
    window.add(&column);

    // 0 = nothing chosen yet. The toggles behave like radio buttons that start unselected.
    let chosen = Rc::new(Cell::new(0u8));
    for (i, star) in stars.iter().enumerate() {
        let n = u8::try_from(i + 1).unwrap_or(5);
        let others: Vec<_> = stars
            .iter()
            .filter(|o| *o != star)
            .map(|o| o.downgrade())
            .collect();
        let chosen = chosen.clone();
        let send = send.downgrade();
        star.connect_toggled(move |b| {
            if b.is_active() {
                chosen.set(n);
                for o in others.iter().filter_map(|o| o.upgrade()) {
                    o.set_active(false);
                }
            } else if chosen.get() == n {
                chosen.set(0);
            }
            if let Some(send) = send.upgrade() {
                send.set_sensitive(chosen.get() != 0);
            }
        });
    }

    {
        let w = window.downgrade();
        let id = id.to_string();
        send.connect_clicked(move |_| {
            let rating = chosen.get();
            if !(1..=5).contains(&rating) {
                return;
            }
            info!(id = %id, rating, "user rated the session");
            ipc.send(LocalRequest::Rate {
                id: id.clone(),
                rating,
                comment: comment.text().trim().to_string(),
            });
            if let Some(w) = w.upgrade() {
                w.close();
            }
        });
    }
    {
        let w = window.downgrade();
        skip.connect_clicked(move |_| {
            if let Some(w) = w.upgrade() {
                w.close();
            }
        });
    }
    {
        let id = id.to_string();
        window.connect_delete_event(move |_, _| {
            info!(id = %id, "rating window closed");
            glib::Propagation::Proceed
        });
    }

    let mut watched: Vec<gtk::Button> = vec![send, skip];
    watched.extend(stars.iter().map(|s| s.clone().upcast()));
    let key = id.to_string();
    report_layout(
        &window,
        &watched,
        move || Some(key.clone()),
        |id, c| {
            let stars: Vec<String> = c[2..].iter().copied().map(point).collect();
            info!(
                id = %id,
                send_button = %point(c[0]),
                skip_button = %point(c[1]),
                star_buttons = %stars.join(";"),
                "rating shown"
            );
        },
    );
    window.show_all();
}
