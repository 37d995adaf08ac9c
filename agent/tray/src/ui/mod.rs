//! The windows the tray shows, and the small GTK helpers they share. Every window uses plain-text
//! labels only (never Pango markup) because technician names, reasons and tickets are shown as
//! typed.

pub mod banner;
pub mod consent;
pub mod message;
pub mod rating;
pub mod status_window;

use crate::icon::{self, Look};
use gtk::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// A left-aligned, wrapping, plain-text label.
/// A window that asks for the user's attention (consent, a technician's message): on top, centred,
/// fixed size, marked urgent, a dialog to the window manager; Escape closes it (the window's
/// delete handler then gives the safe answer: deny, or no reply).
pub fn attention_window(title: &str) -> gtk::Window {
    let window = gtk::Window::new(gtk::WindowType::Toplevel);
    window.set_title(title);
    window.set_keep_above(true);
    window.set_position(gtk::WindowPosition::Center);
    window.set_resizable(false);
    window.set_urgency_hint(true);
    window.set_type_hint(gtk::gdk::WindowTypeHint::Dialog);
    window.set_border_width(18);
    window.connect_key_press_event(|w, key| {
        if key.keyval() == gtk::gdk::keys::constants::Escape {
            w.close();
            return gtk::glib::Propagation::Stop;
        }
        gtk::glib::Propagation::Proceed
    });
    window
}

/// The first line of such a window: who the technician is, as the relay's CA vouches.
pub fn technician_header(
    column: &gtk::Box,
    technician: &str,
    role: tether_protocol::identity::Role,
) {
    let who = label(&crate::text::verified(technician, role));
    emphasize(&who, 1.2);
    column.add(&who);
}

pub fn label(text: &str) -> gtk::Label {
    let l = gtk::Label::new(Some(text));
    l.set_use_markup(false);
    l.set_xalign(0.0);
    l.set_line_wrap(true);
    l.set_max_width_chars(60);
    l
}

/// Makes a label bold and `scale` times larger, through attributes rather than markup.
pub fn emphasize(l: &gtk::Label, scale: f64) {
    let attrs = gtk::pango::AttrList::new();
    attrs.insert(gtk::pango::AttrInt::new_weight(gtk::pango::Weight::Bold));
    attrs.insert(gtk::pango::AttrFloat::new_scale(scale));
    l.set_attributes(Some(&attrs));
}

/// Centre of `widget` in device pixels relative to `window`'s X window: what
/// `xdotool mousemove --window WID X Y` expects.
fn centre_in(widget: &impl IsA<gtk::Widget>, window: &gtk::Window) -> Option<(i32, i32)> {
    let a = widget.allocation();
    if a.width() <= 1 || a.height() <= 1 {
        return None;
    }
    let (x, y) = widget.translate_coordinates(window, a.width() / 2, a.height() / 2)?;
    let scale = window.scale_factor();
    Some((x * scale, y * scale))
}

/// "x,y", the form the logs use for a point.
pub fn point((x, y): (i32, i32)) -> String {
    format!("{x},{y}")
}

/// What was last logged: the key and the button centres.
type Reported = (String, Vec<(i32, i32)>);

/// Calls `report(key, centres of widgets)` once `window` is mapped and laid out, so tests (and
/// accessibility tooling) can find the buttons (and entries). It reports again only if the key (e.g. the
/// session shown) or the positions change; `key` returning `None` means "nothing to report".
pub fn report_layout<W: IsA<gtk::Widget>>(
    window: &gtk::Window,
    buttons: &[W],
    key: impl Fn() -> Option<String> + 'static,
    report: impl Fn(&str, &[(i32, i32)]) + 'static,
) {
    let last: Rc<RefCell<Option<Reported>>> = Rc::default();
    let weak = window.downgrade();
    let watched: Vec<_> = buttons.iter().map(|b| b.downgrade()).collect();
    let check = {
        let last = last.clone();
        move || {
            let Some(window) = weak.upgrade() else { return };
            if !window.is_mapped() {
                return;
            }
            let Some(key) = key() else { return };
            let Some(centres) = watched
                .iter()
                .map(|b| b.upgrade().and_then(|b| centre_in(&b, &window)))
                .collect::<Option<Vec<_>>>()
            else {
                return;
            };
            let now = Some((key, centres));
            if *last.borrow() != now {
                if let Some((key, centres)) = &now {
                    report(key, centres);
                }
                *last.borrow_mut() = now;
            }
        }
    };
    // Checked when the window draws: painting comes after the layout pass, so allocations are
    // final then (an idle callback can run before GTK's frame clock has laid the window out).
    window.connect_draw(move |_, _| {
        check();
        gtk::glib::Propagation::Proceed
    });
    // Hidden and shown again (the banner): report again.
    window.connect_unmap(move |_| *last.borrow_mut() = None);
}

/// The generated icon as a GDK image.
pub fn pixbuf(look: Look, size: u32) -> gtk::gdk_pixbuf::Pixbuf {
    let side = i32::try_from(size).unwrap_or(icon::SIZE as i32);
    gtk::gdk_pixbuf::Pixbuf::from_bytes(
        &gtk::glib::Bytes::from_owned(icon::rgba(look, size)),
        gtk::gdk_pixbuf::Colorspace::Rgb,
        true,
        8,
        side,
        side,
        side * 4,
    )
}
