//! The tray on Windows: native Win32 windows (`sys.rs` holds every FFI call) driven by the same
//! [`App`] as on Linux. A hidden window receives the wake-ups that say messages are queued for
//! the app (from the agent connection's thread, or from a dialog's button), and the notification
//! icon's clicks; the app runs on the UI thread's message loop, never inside another window's
//! procedure, so handlers cannot re-enter it.

mod banner;
mod consent;
mod indicator;
mod message;
mod rating;
mod sys;

use crate::app::{App, Msg, Pending, Post, State, Ui};
use crate::icon::{self, Look};
use crate::ipc::Ipc;
use anyhow::{Context, anyhow};
use banner::Banner;
use consent::ConsentDialog;
use indicator::Indicator;
use message::MessageWindow;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use sys::{Button, Control, Event, Font, Form, Kind, px};
use tether_protocol::consent::{ChatMessage, Prompt};
use tracing::{info, warn};

/// Width of the text in dialogs, in 96-DPI pixels (about 60 characters, as on Linux).
const TEXT_WIDTH: i32 = 420;
/// Space around a dialog's content.
const MARGIN: i32 = 18;
const BUTTON_HEIGHT: i32 = 26;

/// Starts the agent connection and runs the message loop until "Quit".
pub fn run(socket: PathBuf, want_icon: bool) -> anyhow::Result<()> {
    // Started at sign-in and perhaps by hand as well: one tray per session is enough (two would
    // show every dialog twice).
    let Some(_instance) = sys::single_instance("TetherTray").map_err(|e| anyhow!("{e}"))? else {
        anyhow::bail!("tether-tray is already running in this session");
    };
    sys::init(&|size| icon::rgba(Look::Idle, size)).map_err(|e| anyhow!("{e}"))?;
    let hidden = Form::create(Kind::Hidden, "Tether tray").map_err(|e| anyhow!("{e}"))?;
    let waker = hidden.waker();
    let (tx, rx) = mpsc::channel::<Msg>();
    let post = Post::new(move |msg| tx.send(msg).is_ok() && waker.wake());
    let ipc = {
        let post = post.clone();
        Ipc::start(socket.clone(), move |u| post.send(Msg::Agent(u)))
            .context("cannot start the agent connection thread")?
    };
    let indicator = Rc::new(RefCell::new(Indicator::new(
        want_icon,
        hidden,
        post.clone(),
    )));
    let banner = Banner::new(ipc.clone()).map_err(|e| anyhow!("{e}"))?;
    let ui = WinUi {
        ipc: ipc.clone(),
        post: post.clone(),
        indicator: indicator.clone(),
        banner,
    };
    let app = Rc::new(RefCell::new(App::new(ipc, ui)));
    app.borrow_mut().refresh();
    hidden.on_event(move |event| match event {
        Event::Wake => loop {
            // Busy (a window's handler running inside the app's call): come back later.
            let Ok(mut app) = app.try_borrow_mut() else {
                waker.wake();
                return;
            };
            match rx.try_recv() {
                Ok(msg) => app.handle(msg),
                Err(_) => return,
            }
        },
        Event::TrayClick => {
            // Cloned, so the menu's own message loop runs with nothing borrowed.
            let menu = indicator.try_borrow().ok().and_then(|i| i.menu());
            if let Some(msg) = menu.and_then(|m| m.popup(hidden)) {
                post.send(msg);
            }
        }
        Event::TaskbarCreated => match indicator.try_borrow_mut() {
            Ok(mut i) => i.restore(),
            Err(_) => warn!("the taskbar appeared while the tray was busy; restart tether-tray if its icon is missing"),
        },
        _ => {}
    });
    info!(socket = %socket.display(), "tether-tray started");
    sys::run_loop();
    // Drops the app with the hidden window's handler: the notification icon goes away.
    hidden.destroy();
    Ok(())
}

struct WinUi {
    ipc: Ipc,
    post: Post,
    indicator: Rc<RefCell<Indicator>>,
    banner: Banner,
}

impl Ui for WinUi {
    type Consent = ConsentDialog;
    type Message = MessageWindow;

    fn open_consent(&mut self, prompt: &Prompt) -> Option<ConsentDialog> {
        ConsentDialog::open(prompt, self.ipc.clone(), self.post.clone())
    }

    fn open_message(&mut self, message: &ChatMessage) -> Option<MessageWindow> {
        MessageWindow::open(message, self.ipc.clone(), self.post.clone())
    }

    fn open_rating(&mut self, id: &str, technician: &str) {
        if let Err(e) = rating::show(self.ipc.clone(), id, technician) {
            warn!(id = %id, "cannot show the rating window: {e}");
        }
    }

    fn show(&mut self, state: &State) {
        self.indicator
            .borrow_mut()
            .update(state.status, state.look, state.can_end);
        self.banner.update(state.active, state.notices);
    }

    fn quit(&mut self) {
        sys::quit();
    }
}

impl Pending for ConsentDialog {
    fn dismiss(&self) {
        ConsentDialog::dismiss(self);
    }

    fn decline(&self) {
        self.deny();
    }
}

impl Pending for MessageWindow {
    fn dismiss(&self) {
        MessageWindow::dismiss(self);
    }

    fn decline(&self) {
        self.no_reply();
    }
}

/// "x,y", the form the logs use for a point (as on Linux).
fn point((x, y): (i32, i32)) -> String {
    format!("{x},{y}")
}

/// The screen centres of `controls` as logged, `?` for one that has none.
fn centre(c: Control) -> String {
    c.screen_centre().map_or_else(|| "?".into(), point)
}

/// Stacks a dialog's controls from top to bottom.
struct Column {
    form: Form,
    x: i32,
    y: i32,
    width: i32,
}

impl Column {
    fn new(form: Form) -> Column {
        Column {
            form,
            x: px(MARGIN),
            y: px(MARGIN),
            width: px(TEXT_WIDTH),
        }
    }

    /// A wrapped text line; `indent` in 96-DPI pixels.
    fn label(&mut self, text: &str, font: Font, indent: i32) -> Control {
        let (c, h) = self.form.label(
            text,
            font,
            self.x + px(indent),
            self.y,
            self.width - px(indent),
        );
        self.y += h + px(8);
        c
    }

    fn gap(&mut self, v: i32) {
        self.y += px(v);
    }

    fn edit(&mut self, id: u16, placeholder: &str, limit: usize) -> Control {
        let h = px(24);
        let c = self
            .form
            .edit(id, placeholder, limit, (self.x, self.y, self.width, h));
        self.y += h + px(8);
        c
    }

    /// A row of buttons, right-aligned, in the order given (left to right).
    fn buttons(&mut self, specs: &[(u16, &str, Button)]) -> Vec<Control> {
        let widths: Vec<i32> = specs
            .iter()
            .map(|(_, text, _)| (sys::measure(text, Font::Normal, None).0 + px(24)).max(px(88)))
            .collect();
        let gap = px(8);
        let total: i32 = widths.iter().sum::<i32>() + gap * (widths.len() as i32 - 1).max(0);
        let mut x = self.x + self.width - total;
        let h = px(BUTTON_HEIGHT);
        let mut out = Vec::new();
        for ((id, text, kind), w) in specs.iter().zip(widths) {
            out.push(self.form.button(*id, text, *kind, (x, self.y, w, h)));
            x += w + gap;
        }
        self.y += h;
        out
    }

    /// Sizes the window to what was added.
    fn finish(self) {
        self.form
            .set_client_size(self.width + 2 * self.x, self.y + px(MARGIN));
    }
}

/// The heading every attention window starts with: who the technician is, as the relay's CA
/// vouches.
fn technician_header(col: &mut Column, technician: &str, role: tether_protocol::identity::Role) {
    col.label(&crate::text::verified(technician, role), Font::Large, 0);
}
