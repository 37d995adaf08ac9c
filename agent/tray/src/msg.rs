//! What reaches the tray's main loop ([`Msg`]) and how anything posts it ([`Post`]). Its own
//! module because the app (`app.rs`) and every window it opens (`ui/*`, `indicator.rs`) use
//! them, and the windows must not depend on the app.

use crate::ipc::Update;

pub enum Msg {
    Agent(Update),
    /// A consent dialog went away after answering (or being dismissed).
    ConsentClosed(String),
    /// A technician's message window went away after replying (or its time ran out).
    MessageWindowClosed(String),
    /// "End session" in the tray menu or status window: end every active session.
    EndAll,
    Quit,
}

/// Posts a [`Msg`] to the main loop from any thread or callback.
#[derive(Clone)]
pub struct Post(async_channel::Sender<Msg>);

impl Post {
    pub fn new(tx: async_channel::Sender<Msg>) -> Self {
        Post(tx)
    }

    /// False once the main loop has stopped listening.
    pub fn send(&self, msg: Msg) -> bool {
        self.0.try_send(msg).is_ok()
    }
}
