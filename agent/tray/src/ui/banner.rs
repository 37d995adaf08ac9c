//! The session banner: while anyone is connected to this computer, a small undecorated window
//! stays on top at the top centre of the screen, says who and how, and offers "End session". It
//! cannot be closed while a session runs, so remote access is never invisible.

use super::{label, point, report_layout};
use crate::ipc::Ipc;
use crate::text;
use gtk::glib;
use gtk::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use tether_protocol::consent::{ActiveSession, LocalRequest};
use tracing::info;

pub const TITLE: &str = "Tether: session active";

pub struct Banner {
    window: gtk::Window,
    text: gtk::Label,
    /// The session the banner names and its button ends.
    shown: Rc<RefCell<Option<String>>>,
}

impl Banner {
    /// Builds the (hidden) banner.
    pub fn new(ipc: Ipc) -> Self {
        let window = gtk::Window::new(gtk::WindowType::Toplevel);
        window.set_title(TITLE);
        window.set_decorated(false);
        window.set_keep_above(true);
        window.set_resizable(false);
        window.set_skip_taskbar_hint(true);
        window.set_skip_pager_hint(true);
        // Appearing must not take the keyboard away from what the user is typing.
        window.set_focus_on_map(false);
        window.stick();
        window.set_border_width(6);

        let row = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        let icon = gtk::Label::new(Some("●"));
        let red = gtk::pango::AttrList::new();
        red.insert(gtk::pango::AttrColor::new_foreground(
            0xdc00, 0x2600, 0x2600,
        ));
        icon.set_attributes(Some(&red));
        row.add(&icon);
        let text = label("");
        text.set_line_wrap(false);
        text.set_max_width_chars(-1);
        row.add(&text);
        let end = gtk::Button::with_label("End session");
        row.add(&end);
        window.add(&row);

        let shown: Rc<RefCell<Option<String>>> = Rc::default();
        {
            let shown = shown.clone();
            end.connect_clicked(move |_| {
                if let Some(id) = shown.borrow().clone() {
                    info!(id = %id, "user ended the session from the banner");
                    ipc.send(LocalRequest::End { id });
                }
            });
        }
        // Only the end of the session takes the banner away.
        window.connect_delete_event(|_, _| glib::Propagation::Stop);
        window.connect_size_allocate(|w, _| place_top_centre(w));

        let key = shown.clone();
        report_layout(
            &window,
            &[end],
            move || key.borrow().clone(),
            |id, c| info!(id = %id, end_button = %point(c[0]), "banner shown"),
        );
        Self {
            window,
            text,
            shown,
        }
    }

    /// Shows the latest active session, or hides the banner when none runs.
    pub fn update(
        &self,
        active: &[ActiveSession],
        notices: &std::collections::HashMap<String, String>,
    ) {
        match text::banner(active, notices) {
            None => {
                *self.shown.borrow_mut() = None;
                self.window.hide();
            }
            Some((session, line)) => {
                *self.shown.borrow_mut() = Some(session.id.clone());
                self.text.set_text(&line);
                self.window.show_all();
            }
        }
    }
}

/// Moves the banner to the top centre of the monitor it is on.
fn place_top_centre(window: &gtk::Window) {
    let Some(display) = gtk::gdk::Display::default() else {
        return;
    };
    let monitor = window
        .window()
        .and_then(|w| display.monitor_at_window(&w))
        .or_else(|| display.primary_monitor())
        .or_else(|| display.monitor(0));
    let Some(monitor) = monitor else { return };
    let area = monitor.geometry();
    let (width, _) = window.size();
    let x = area.x() + (area.width() - width).max(0) / 2;
    let y = area.y();
    if window.position() != (x, y) {
        window.move_(x, y);
    }
}
