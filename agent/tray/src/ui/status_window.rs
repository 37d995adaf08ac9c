//! The fallback for desktops without a tray icon (no libayatana-appindicator3, no StatusNotifier
//! host on the session bus, or `--no-tray-icon`): a small window titled "Tether" with the same status line and the same
//! "End session" and "Quit" actions as the tray menu. Closing it quits, like "Quit".

use super::{label, pixbuf, point, report_layout};
use crate::icon::Look;
use crate::msg::{Msg, Post};
use gtk::glib;
use gtk::prelude::*;
use tracing::info;

pub const TITLE: &str = "Tether";

/// Size of the state icon next to the status line.
const ICON: u32 = 24;

pub struct StatusWindow {
    image: gtk::Image,
    status: gtk::Label,
    end: gtk::Button,
    look: Option<Look>,
}

impl StatusWindow {
    pub fn new(post: Post) -> Self {
        let window = gtk::Window::new(gtk::WindowType::Toplevel);
        window.set_title(TITLE);
        window.set_border_width(12);
        window.set_resizable(false);

        let column = gtk::Box::new(gtk::Orientation::Vertical, 8);
        let row = gtk::Box::new(gtk::Orientation::Horizontal, 8);
        let image = gtk::Image::new();
        row.add(&image);
        let status = label("");
        // A fixed width (long lines wrap) keeps the window, and its buttons, from jumping around
        // as the status changes.
        status.set_width_chars(60);
        status.set_max_width_chars(60);
        row.add(&status);
        column.add(&row);
        let buttons = gtk::ButtonBox::new(gtk::Orientation::Horizontal);
        buttons.set_layout(gtk::ButtonBoxStyle::End);
        buttons.set_spacing(8);
        let quit = gtk::Button::with_label("Quit");
        let end = gtk::Button::with_label("End session");
        end.set_sensitive(false);
        buttons.add(&quit);
        buttons.add(&end);
        column.add(&buttons);
        window.add(&column);

        {
            let post = post.clone();
            end.connect_clicked(move |_| {
                post.send(Msg::EndAll);
            });
        }
        {
            let post = post.clone();
            quit.connect_clicked(move |_| {
                post.send(Msg::Quit);
            });
        }
        window.connect_delete_event(move |_, _| {
            post.send(Msg::Quit);
            // Quitting tears the window down; keep it until then.
            glib::Propagation::Stop
        });
        report_layout(
            &window,
            &[end.clone(), quit],
            || Some(String::new()),
            |_, c| {
                info!(
                    end_button = %point(c[0]),
                    quit_button = %point(c[1]),
                    "status window shown"
                );
            },
        );
        window.show_all();
        Self {
            image,
            status,
            end,
            look: None,
        }
    }

    pub fn update(&mut self, status: &str, look: Look, can_end: bool) {
        self.status.set_text(status);
        self.end.set_sensitive(can_end);
        if self.look != Some(look) {
            self.image.set_from_pixbuf(Some(&pixbuf(look, ICON)));
            self.look = Some(look);
        }
    }
}
