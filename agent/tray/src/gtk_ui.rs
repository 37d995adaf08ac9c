//! The tray on Linux desktops: GTK windows (`ui/`), a tray icon or status window
//! (`indicator.rs`), and the GTK main loop that runs [`App`].

use crate::app::{App, Msg, Pending, Post, State, Ui};
use crate::icon::{self, Look};
use crate::indicator::Indicator;
use crate::ipc::Ipc;
use crate::ui::{self, banner::Banner, consent::ConsentDialog, message::MessageWindow, rating};
use anyhow::{Context, anyhow};
use gtk::glib;
use std::path::PathBuf;
use tether_protocol::consent::{ChatMessage, Prompt};
use tracing::info;

/// Opens the display, starts the agent connection and runs the GTK main loop until "Quit".
pub fn run(socket: PathBuf, want_icon: bool) -> anyhow::Result<()> {
    gtk::init().map_err(|e| {
        anyhow!(
            "cannot open the desktop display ({e}); run tether-tray inside the user's graphical session (DISPLAY or WAYLAND_DISPLAY set)"
        )
    })?;
    gtk::Window::set_default_icon(&ui::pixbuf(Look::Idle, icon::SIZE));

    let (tx, rx) = async_channel::unbounded();
    let post = Post::new(move |msg| tx.try_send(msg).is_ok());
    let ipc = {
        let post = post.clone();
        Ipc::start(socket.clone(), move |u| post.send(Msg::Agent(u)))
            .context("cannot start the agent connection thread")?
    };
    let ui = GtkUi {
        indicator: Indicator::new(want_icon, post.clone()),
        banner: Banner::new(ipc.clone()),
        ipc: ipc.clone(),
        post,
    };
    let mut app = App::new(ipc, ui);
    app.refresh();
    glib::MainContext::default().spawn_local(async move {
        while let Ok(msg) = rx.recv().await {
            app.handle(msg);
        }
    });
    info!(socket = %socket.display(), "tether-tray started");
    gtk::main();
    Ok(())
}

struct GtkUi {
    ipc: Ipc,
    post: Post,
    indicator: Indicator,
    banner: Banner,
}

impl Ui for GtkUi {
    type Consent = ConsentDialog;
    type Message = MessageWindow;

    fn open_consent(&mut self, prompt: &Prompt) -> Option<ConsentDialog> {
        Some(ConsentDialog::open(
            prompt,
            self.ipc.clone(),
            self.post.clone(),
        ))
    }

    fn open_message(&mut self, message: &ChatMessage) -> Option<MessageWindow> {
        Some(MessageWindow::open(
            message,
            self.ipc.clone(),
            self.post.clone(),
        ))
    }

    fn open_rating(&mut self, id: &str, technician: &str) {
        rating::show(self.ipc.clone(), id, technician);
    }

    fn show(&mut self, state: &State) {
        self.indicator
            .update(state.status, state.look, state.can_end);
        self.banner.update(state.active, state.notices);
    }

    fn quit(&mut self) {
        gtk::main_quit();
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
