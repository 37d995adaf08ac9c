//! The tray's state and the one place it changes, the same on every desktop. Agent events, menu
//! clicks and closed dialogs all arrive as [`Msg`]s on the toolkit's main loop and are handled in
//! order by [`App::handle`], so no state is shared between callbacks. What the user sees is the
//! toolkit's: GTK on Linux (`gtk_ui.rs`), Win32 on Windows (`win/`), both behind [`Ui`].

use crate::icon::Look;
use crate::ipc::{Ipc, Update};
pub use crate::msg::{Msg, Post};
use crate::text;
use std::collections::HashMap;
use std::time::Duration;
use tether_protocol::consent::{
    ActiveSession, ChatMessage, EngagementInfo, LocalEvent, LocalRequest, Prompt,
};
use tracing::{info, warn};

/// A window waiting for the user's answer (a consent dialog, a technician's message).
pub trait Pending {
    /// The agent closed the request (answered elsewhere, or it timed out): close the window
    /// without answering.
    fn dismiss(&self);
    /// Give the safe answer and close (the tray is quitting): deny, or "no reply".
    fn decline(&self);
}

/// What the tray shows between dialogs (icon, menu or status window, and the banner).
pub struct State<'a> {
    pub status: &'a str,
    pub look: Look,
    /// Whether "End session" has anything to end.
    pub can_end: bool,
    pub active: &'a [ActiveSession],
    /// What the banner adds under a session's line, by session id.
    pub notices: &'a HashMap<String, String>,
}

/// The toolkit's side: opens the windows the app decides on.
pub trait Ui {
    type Consent: Pending;
    type Message: Pending;
    /// `None` when the window could not be made (the toolkit has answered safely and logged
    /// why).
    fn open_consent(&mut self, prompt: &Prompt) -> Option<Self::Consent>;
    fn open_message(&mut self, message: &ChatMessage) -> Option<Self::Message>;
    /// Asks for a rating of the engagement `id` (an independent window nobody tracks).
    fn open_rating(&mut self, id: &str, technician: &str);
    fn show(&mut self, state: &State);
    /// Leaves the main loop.
    fn quit(&mut self);
}

pub struct App<U: Ui> {
    ipc: Ipc,
    ui: U,
    connected: bool,
    /// Why the agent turned us away, while it does.
    refused: Option<String>,
    active: Vec<ActiveSession>,
    /// Open engagements: their technicians may come back without a prompt.
    engagements: Vec<EngagementInfo>,
    consents: HashMap<String, U::Consent>,
    /// Technicians' messages on screen, by message id.
    messages: HashMap<String, U::Message>,
    /// What the banner adds under a session's line, by session id.
    notices: HashMap<String, String>,
}

impl<U: Ui> App<U> {
    /// The app before the agent answers; call [`App::refresh`] to show it.
    pub fn new(ipc: Ipc, ui: U) -> Self {
        App {
            ipc,
            ui,
            connected: false,
            refused: None,
            active: Vec::new(),
            engagements: Vec::new(),
            consents: HashMap::new(),
            messages: HashMap::new(),
            notices: HashMap::new(),
        }
    }

    pub fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Agent(Update::Connected) => {
                self.connected = true;
                self.refused = None;
                self.refresh();
            }
            Msg::Agent(Update::Disconnected) => {
                self.refused = None;
                self.disconnected();
            }
            Msg::Agent(Update::Refused(message)) => {
                self.refused = Some(message);
                self.disconnected();
            }
            Msg::Agent(Update::Event(e)) => self.event(e),
            Msg::ConsentClosed(id) => {
                self.consents.remove(&id);
            }
            Msg::MessageWindowClosed(id) => {
                self.messages.remove(&id);
            }
            Msg::EndAll => {
                // Ending a session ends its engagement too; engagements with nothing running
                // are ended by their own id.
                let mut ids: Vec<String> = self.active.iter().map(|s| s.id.clone()).collect();
                for e in &self.engagements {
                    if !self.active.iter().any(|s| s.engagement == e.id) {
                        ids.push(e.id.clone());
                    }
                }
                for id in ids {
                    info!(id = %id, "user ended the session from the tray");
                    self.ipc.send(LocalRequest::End { id });
                }
            }
            Msg::Quit => self.quit(),
        }
    }

    fn event(&mut self, event: LocalEvent) {
        match event {
            LocalEvent::Snapshot {
                prompts,
                active,
                messages,
                engagements,
            } => {
                self.engagements = engagements;
                // Prompts the agent no longer has were decided while we were away.
                let stale: Vec<String> = self
                    .consents
                    .keys()
                    .filter(|id| !prompts.iter().any(|p| &p.id == *id))
                    .cloned()
                    .collect();
                for id in stale {
                    if let Some(d) = self.consents.remove(&id) {
                        d.dismiss();
                    }
                }
                for p in &prompts {
                    self.prompt(p);
                }
                // Likewise messages answered or timed out while we were away.
                let stale: Vec<String> = self
                    .messages
                    .keys()
                    .filter(|id| !messages.iter().any(|m| &m.id == *id))
                    .cloned()
                    .collect();
                for id in stale {
                    if let Some(w) = self.messages.remove(&id) {
                        w.dismiss();
                    }
                }
                for m in &messages {
                    self.message(m);
                }
                self.active = active;
                self.refresh();
            }
            LocalEvent::Prompt(p) => self.prompt(&p),
            LocalEvent::PromptClosed { id, outcome } => {
                info!(id = %id, outcome = outcome.message(), "request closed by the agent");
                if let Some(d) = self.consents.remove(&id) {
                    d.dismiss();
                }
            }
            LocalEvent::Started(s) => {
                info!(id = %s.id, technician = %s.technician, unattended = s.unattended, "session started");
                self.active.retain(|a| a.id != s.id);
                self.active.push(s);
                self.refresh();
            }
            LocalEvent::Ended {
                id,
                technician,
                by_user,
            } => {
                info!(id = %id, technician = %technician, by_user, "session ended");
                self.notices.remove(&id);
                self.active.retain(|a| a.id != id);
                self.refresh();
            }
            LocalEvent::Engagement(e) => {
                self.engagements.retain(|x| x.id != e.id);
                self.engagements.push(e);
                self.refresh();
            }
            LocalEvent::EngagementEnded {
                id,
                technician,
                by_user,
            } => {
                // One rating for the whole visit, however many sessions it took.
                info!(id = %id, by_user, "engagement ended");
                self.engagements.retain(|x| x.id != id);
                self.refresh();
                self.ui.open_rating(&id, &technician);
            }
            LocalEvent::Done { message } => info!("agent: {message}"),
            LocalEvent::Error { message } => warn!("agent refused: {message}"),
            LocalEvent::Message(m) => self.message(&m),
            LocalEvent::Notice { id, text } => {
                info!(id = %id, "notice: {text}");
                self.notices.insert(id, text);
                self.refresh();
            }
            LocalEvent::MessageClosed { id } => {
                if let Some(w) = self.messages.remove(&id) {
                    info!(id = %id, "message closed by the agent");
                    w.dismiss();
                }
            }
        }
    }

    fn prompt(&mut self, p: &Prompt) {
        if self.consents.contains_key(&p.id) {
            return;
        }
        info!(id = %p.id, technician = %p.technician, seconds = p.seconds_left, "session request");
        if let Some(dialog) = self.ui.open_consent(p) {
            self.consents.insert(p.id.clone(), dialog);
        }
    }

    fn message(&mut self, m: &ChatMessage) {
        if self.messages.contains_key(&m.id) || m.seconds_left == 0 {
            return;
        }
        info!(id = %m.id, technician = %m.technician, seconds = m.seconds_left, "message from a technician");
        if let Some(window) = self.ui.open_message(m) {
            self.messages.insert(m.id.clone(), window);
        }
    }

    fn disconnected(&mut self) {
        self.connected = false;
        // Without the agent there is nobody to answer and no session can run.
        for (_, d) in self.consents.drain() {
            d.dismiss();
        }
        // Replies could not be delivered; the snapshot after reconnecting shows them again.
        for (_, w) in self.messages.drain() {
            w.dismiss();
        }
        self.active.clear();
        self.engagements.clear();
        self.refresh();
    }

    pub fn refresh(&mut self) {
        let status = match (
            &self.refused,
            self.active.is_empty(),
            self.engagements.last(),
        ) {
            (Some(message), _, _) => text::refused(message),
            (None, true, Some(e)) if self.connected => text::engaged(e),
            (None, _, _) => text::status(self.connected, &self.active),
        };
        let look = match (self.connected, self.active.is_empty()) {
            (false, _) => Look::Offline,
            (true, true) => Look::Idle,
            (true, false) => Look::Active,
        };
        let can_end = !self.active.is_empty() || !self.engagements.is_empty();
        self.ui.show(&State {
            status: &status,
            look,
            can_end,
            active: &self.active,
            notices: &self.notices,
        });
    }

    fn quit(&mut self) {
        // Requests still waiting are denied rather than left to time out.
        for (_, d) in self.consents.drain() {
            d.decline();
        }
        // Messages get "no reply" at once instead of at their deadline.
        for (_, w) in self.messages.drain() {
            w.decline();
        }
        self.ipc.flush(Duration::from_secs(1));
        info!("quitting");
        self.ui.quit();
    }
}
