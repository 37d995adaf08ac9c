//! What reaches the tray's main loop ([`Msg`]) and how anything posts it ([`Post`]). Its own
//! module because the app (`app.rs`) and every window it opens use them, and the windows must not
//! depend on the app. How a message reaches the loop is the toolkit's business (a channel the GTK
//! loop awaits; on Windows a queue plus a posted window message), so [`Post`] wraps a function.

use crate::ipc::Update;
use std::sync::Arc;

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
pub struct Post(Arc<dyn Fn(Msg) -> bool + Send + Sync>);

impl Post {
    /// `deliver` queues a message for the main loop; false once the loop has stopped listening.
    pub fn new(deliver: impl Fn(Msg) -> bool + Send + Sync + 'static) -> Self {
        Post(Arc::new(deliver))
    }

    /// False once the main loop has stopped listening.
    pub fn send(&self, msg: Msg) -> bool {
        (self.0)(msg)
    }
}
