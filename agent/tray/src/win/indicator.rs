//! Where the user sees the tray's state between dialogs on Windows: an icon in the taskbar's
//! notification area whose menu (left or right click) shows the status and offers "End session"
//! and "Quit"; or, when the shell has no notification area (or `--no-tray-icon`), the small
//! status window titled "Tether" with the same line and buttons, as on Linux.

use super::sys::{
    Button, Control, Event, Font, Form, Icon, Kind, MenuItem, Place, TrayIcon, popup_menu,
    small_icon_size,
};
use super::{Column, centre};
use crate::icon::{self, Look};
use crate::msg::{Msg, Post};
use crate::text;
use tracing::{info, warn};

const END: u16 = 500;
const QUIT: u16 = 501;

/// The icon or the status window, and what they show.
pub struct Indicator {
    owner: Form,
    want_icon: bool,
    post: Post,
    menu: Menu,
    look: Look,
    /// The icon and the look it has.
    icon: Option<(TrayIcon, Look)>,
    window: Option<StatusWindow>,
}

/// What the icon's menu offers.
#[derive(Clone)]
pub struct Menu {
    status: String,
    can_end: bool,
}

impl Menu {
    /// Shows the menu at the pointer; what the user chose, if anything.
    pub fn popup(&self, owner: Form) -> Option<Msg> {
        let chosen = popup_menu(
            owner,
            &[
                MenuItem::Item {
                    id: 0xfff0,
                    text: &self.status,
                    enabled: false,
                },
                MenuItem::Separator,
                MenuItem::Item {
                    id: END,
                    text: "End session",
                    enabled: self.can_end,
                },
                MenuItem::Item {
                    id: QUIT,
                    text: "Quit",
                    enabled: true,
                },
            ],
        );
        match chosen {
            Some(END) => Some(Msg::EndAll),
            Some(QUIT) => Some(Msg::Quit),
            _ => None,
        }
    }
}

fn make_icon(look: Look) -> Result<Icon, String> {
    let size = small_icon_size();
    Icon::from_rgba(&icon::rgba(look, size), size)
}

impl Indicator {
    /// A notification icon on `owner` if `want_icon` and the shell takes it, else the status
    /// window (until the taskbar appears: see [`Indicator::restore`]).
    pub fn new(want_icon: bool, owner: Form, post: Post) -> Self {
        let mut ind = Indicator {
            owner,
            want_icon,
            post,
            menu: Menu {
                status: text::NOT_RUNNING.into(),
                can_end: false,
            },
            look: Look::Offline,
            icon: None,
            window: None,
        };
        if !want_icon {
            info!("tray icon disabled; showing the status window");
        } else if let Err(e) = ind.add_icon() {
            warn!("no tray icon: {e}; showing a status window instead (until the taskbar appears)");
        }
        if ind.icon.is_none() {
            ind.window = StatusWindow::new(ind.post.clone());
        }
        ind
    }

    fn add_icon(&mut self) -> Result<(), String> {
        let icon = TrayIcon::add(self.owner, make_icon(self.look)?, &self.menu.status)?;
        self.icon = Some((icon, self.look));
        info!("tray icon created");
        Ok(())
    }

    /// The icon's menu as it stands (`None` without an icon).
    pub fn menu(&self) -> Option<Menu> {
        self.icon.as_ref().map(|_| self.menu.clone())
    }

    /// The taskbar was (re)created (Explorer started or restarted): put the icon there, in
    /// place of the status window if that was shown for want of a taskbar.
    pub fn restore(&mut self) {
        match &self.icon {
            Some((icon, _)) => {
                if !icon.restore() {
                    warn!("cannot put the tray icon back after Explorer restarted");
                }
            }
            None if self.want_icon => match self.add_icon() {
                Ok(()) => {
                    if let Some(w) = self.window.take() {
                        w.close();
                    }
                }
                Err(e) => warn!("still no tray icon: {e}"),
            },
            None => {}
        }
    }

    pub fn update(&mut self, status: &str, look: Look, can_end: bool) {
        self.menu.status = status.to_string();
        self.menu.can_end = can_end;
        self.look = look;
        if let Some((icon, shown)) = &mut self.icon {
            let changed = if *shown == look {
                None
            } else {
                match make_icon(look) {
                    Ok(i) => {
                        *shown = look;
                        Some(i)
                    }
                    Err(e) => {
                        warn!("cannot change the tray icon: {e}");
                        None
                    }
                }
            };
            icon.set(changed, status);
        }
        if let Some(w) = &self.window {
            w.update(status, can_end);
        }
    }
}

/// The fallback window: the status line, "Quit" and "End session". Closing it quits.
pub struct StatusWindow {
    form: Form,
    status: Control,
    end: Control,
}

impl StatusWindow {
    fn new(post: Post) -> Option<Self> {
        let form = match Form::create(Kind::Dialog { topmost: false }, "Tether") {
            Ok(f) => f,
            Err(e) => {
                warn!("cannot show the status window: {e}");
                return None;
            }
        };
        let mut col = Column::new(form);
        // Two lines' room, so the buttons do not move as the status changes.
        let status = col.label(" \n ", Font::Normal, 0);
        col.gap(4);
        let buttons = col.buttons(&[
            (QUIT, "Quit", Button::Push),
            (END, "End session", Button::Push),
        ]);
        let (quit, end) = (buttons[0], buttons[1]);
        end.enable(false);
        col.finish();
        form.place(Place::BottomRight);
        form.on_event(move |event| match event {
            Event::Command(END) => {
                post.send(Msg::EndAll);
            }
            Event::Command(QUIT) | Event::Close => {
                post.send(Msg::Quit);
            }
            _ => {}
        });
        form.show(false);
        info!(
            end_button = %centre(end),
            quit_button = %centre(quit),
            "status window shown"
        );
        Some(Self { form, status, end })
    }

    /// Goes away without quitting (the tray icon took over).
    fn close(self) {
        self.form.destroy();
    }

    fn update(&self, status: &str, can_end: bool) {
        self.status.set_text(status);
        self.end.enable(can_end);
    }
}
