//! The agent's consent service: one task owns the [`Book`] (prompts waiting for the user,
//! sessions running) and everything else talks to it through a cloneable [`Consent`] handle:
//! session streams ask it for a decision, the local socket ([`crate::ipc`]) brings the user's
//! answers, and it tells the relay when the user ended or rated a session.

use std::collections::HashMap;
use std::time::Duration;
use tether_protocol::consent::{Answer, Book, BookError, LocalEvent, Outcome};
use tether_protocol::identity::Role;
use tether_protocol::message::AgentToRelay;
use tether_protocol::session::{MessageReply, SessionGrant, UserMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct ConsentOptions {
    /// How long a prompt waits before the session is denied.
    pub timeout: Duration,
    /// Let prompts wait for `tether-agent approve` when no tray app is connected (headless
    /// machines). Otherwise, no tray app means no one to ask, and sessions are denied at once.
    pub terminal_approval: bool,
    /// How long an engagement with nothing running lasts before it ends (and the user is asked
    /// to rate it).
    pub engagement_idle: Duration,
}

impl Default for ConsentOptions {
    fn default() -> Self {
        Self {
            timeout: tether_protocol::consent::DEFAULT_TIMEOUT,
            terminal_approval: false,
            engagement_idle: tether_protocol::consent::DEFAULT_ENGAGEMENT_IDLE,
        }
    }
}

enum Cmd {
    Notice(String, String),
    Offer(SessionGrant, Option<String>, oneshot::Sender<Decided>),
    Answer(String, Answer, oneshot::Sender<Result<String, BookError>>),
    Started(SessionGrant, bool, oneshot::Sender<watch::Receiver<bool>>),
    Ended(String),
    Withdrawn(String),
    End(String, oneshot::Sender<Result<String, BookError>>),
    Rate(
        String,
        u8,
        String,
        oneshot::Sender<Result<String, BookError>>,
    ),
    Subscribe(mpsc::Sender<LocalEvent>),
    Message(UserMessage, oneshot::Sender<MessageReply>),
    Reply(String, String, oneshot::Sender<Result<String, BookError>>),
    Snapshot(oneshot::Sender<LocalEvent>),
    TechnicianEnds(String, Role, String, oneshot::Sender<Option<String>>),
}

/// How an offer was decided, and the engagement the session joins when accepted by the user.
#[derive(Debug, Clone)]
pub struct Decided {
    pub outcome: Outcome,
    pub engagement: Option<String>,
}

impl Decided {
    fn no_approver() -> Self {
        Decided {
            outcome: Outcome::NoApprover,
            engagement: None,
        }
    }
}

/// Handle to the consent task.
#[derive(Clone)]
pub struct Consent {
    tx: mpsc::Sender<Cmd>,
    to_relay: mpsc::Sender<AgentToRelay>,
}

/// Returned when the consent task is gone (the agent is stopping).
const GONE: &str = "the agent is stopping";

/// Why the consent service could not do what the tray asked.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("{GONE}")]
    Gone,
    #[error(transparent)]
    Book(#[from] BookError),
}

impl Consent {
    /// Starts the task. `to_relay` carries the user's end and rating reports to the relay.
    pub fn spawn(opts: ConsentOptions, to_relay: mpsc::Sender<AgentToRelay>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(opts, rx, to_relay.clone()));
        Self { tx, to_relay }
    }

    /// Something done in a session, for its audit record on the relay.
    pub fn audit(&self, session_id: &str, action: String) {
        tracing::info!(session = %session_id, "{action}");
        let msg = AgentToRelay::SessionAction {
            session_id: session_id.to_string(),
            action,
        };
        if self.to_relay.try_send(msg).is_err() {
            warn!("relay report queue full; audit entry dropped");
        }
    }

    /// Decides a valid offer: unattended policy, an engagement the user approved, the user's
    /// answer, or deny. `runs_as` is the account its commands would run as, for the prompt.
    pub async fn offer(&self, grant: SessionGrant, runs_as: Option<String>) -> Decided {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::Offer(grant, runs_as, reply))
            .await
            .is_err()
        {
            return Decided::no_approver();
        }
        rx.await.unwrap_or_else(|_| Decided::no_approver())
    }

    /// Registers a running session. The receiver turns `true` when the user ends it.
    pub async fn started(&self, grant: SessionGrant, unattended: bool) -> watch::Receiver<bool> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Started(grant, unattended, reply)).await;
        match rx.await {
            Ok(r) => r,
            // No consent task: a receiver that never fires.
            Err(_) => watch::channel(false).1,
        }
    }

    /// The technician gave up waiting: close the prompt.
    pub async fn withdraw(&self, id: String) {
        let _ = self.tx.send(Cmd::Withdrawn(id)).await;
    }

    pub async fn ended(&self, id: String) {
        let _ = self.tx.send(Cmd::Ended(id)).await;
    }

    pub async fn answer(&self, id: String, answer: Answer) -> Result<String, ConsentError> {
        self.ask(|r| Cmd::Answer(id, answer, r)).await
    }

    pub async fn end(&self, id: String) -> Result<String, ConsentError> {
        self.ask(|r| Cmd::End(id, r)).await
    }

    pub async fn rate(
        &self,
        id: String,
        rating: u8,
        comment: String,
    ) -> Result<String, ConsentError> {
        self.ask(|r| Cmd::Rate(id, rating, comment, r)).await
    }

    /// The technician is done with their engagement for `ticket`. Returns its id if one was open.
    pub async fn technician_ends(
        &self,
        technician: String,
        role: Role,
        ticket: String,
    ) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::TechnicianEnds(technician, role, ticket, reply);
        if self.tx.send(cmd).await.is_err() {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// Shows a technician's message on the tray and waits for the user's reply.
    pub async fn message(&self, m: UserMessage) -> MessageReply {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Message(m, reply)).await.is_err() {
            return MessageReply::NoTray;
        }
        rx.await.unwrap_or(MessageReply::NoTray)
    }

    pub async fn reply(&self, id: String, text: String) -> Result<String, ConsentError> {
        self.ask(|r| Cmd::Reply(id, text, r)).await
    }

    /// Shows `text` on session `id`'s banner (a desktop dialog is coming).
    pub async fn notice(&self, id: String, text: String) {
        let _ = self.tx.send(Cmd::Notice(id, text)).await;
    }

    /// Every event from now on goes to `events` (the tray). Dropping its receiver unsubscribes.
    pub async fn subscribe(&self, events: mpsc::Sender<LocalEvent>) {
        let _ = self.tx.send(Cmd::Subscribe(events)).await;
    }

    pub async fn snapshot(&self) -> LocalEvent {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Snapshot(reply)).await;
        rx.await.unwrap_or(LocalEvent::Error {
            message: GONE.into(),
        })
    }

    async fn ask(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<String, BookError>>) -> Cmd,
    ) -> Result<String, ConsentError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(cmd(reply))
            .await
            .map_err(|_| ConsentError::Gone)?;
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConsentError::Gone),
        }
    }
}

async fn run(
    opts: ConsentOptions,
    mut rx: mpsc::Receiver<Cmd>,
    to_relay: mpsc::Sender<AgentToRelay>,
) {
    let mut book = Book::new(opts.timeout).with_engagement_idle(opts.engagement_idle);
    let mut waiting: HashMap<String, oneshot::Sender<Decided>> = HashMap::new();
    let mut enders: HashMap<String, watch::Sender<bool>> = HashMap::new();
    let mut subscribers: Vec<mpsc::Sender<LocalEvent>> = Vec::new();
    let mut waiting_replies: HashMap<String, oneshot::Sender<MessageReply>> = HashMap::new();
    let report = |msg: AgentToRelay| {
        // The relay connection may be down; a full queue means it has been down for a while,
        // and the audit row keeps what the relay saw itself.
        if to_relay.try_send(msg).is_err() {
            warn!("relay report queue full; report dropped");
        }
    };
    loop {
        let wake = book.poll_timeout().map(Instant::from_std);
        let cmd = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => Some(c),
                None => return,
            },
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } else { std::future::pending().await } } => None,
        };
        let now = Instant::now().into_std();
        match cmd {
            None => book.handle_timeout(now),
            Some(Cmd::Offer(grant, runs_as, reply)) => {
                subscribers.retain(|s| !s.is_closed());
                let can_prompt = !subscribers.is_empty() || opts.terminal_approval;
                info!(
                    session = %grant.session_id, technician = %grant.technician, role = %grant.role,
                    permissions = %grant.permissions.describe(), reason = %grant.reason, ticket = %grant.ticket,
                    trays = subscribers.len(), "session requested"
                );
                waiting.insert(grant.session_id.clone(), reply);
                book.handle_offer(now, grant, can_prompt, runs_as);
            }
            Some(Cmd::Answer(id, answer, reply)) => {
                let _ = reply.send(book.handle_answer(now, &id, answer));
            }
            Some(Cmd::Started(grant, unattended, reply)) => {
                let (tx, rx) = watch::channel(false);
                enders.insert(grant.session_id.clone(), tx);
                book.handle_started(&grant, unattended, now_ms());
                let _ = reply.send(rx);
            }
            Some(Cmd::Withdrawn(id)) => book.handle_withdrawn(&id),
            Some(Cmd::Ended(id)) => {
                let by_user = enders.remove(&id).is_some_and(|e| *e.borrow());
                book.handle_ended(now, &id, by_user);
            }
            Some(Cmd::End(id, reply)) => {
                // Ending one session ends the user's whole approval of that visit.
                let r = book.handle_end(&id);
                if let Ok((full, stop)) = &r {
                    info!(id = %full, sessions = stop.len(), "engagement ended by the user");
                    for s in stop {
                        if let Some(e) = enders.get(s) {
                            let _ = e.send(true);
                        }
                        report(AgentToRelay::SessionEndedByUser {
                            session_id: s.clone(),
                        });
                    }
                }
                let _ = reply.send(r.map(|(full, _)| full));
            }
            Some(Cmd::Rate(id, rating, comment, reply)) => {
                let r = book.check_rating(&id, rating, &comment);
                if let Ok((full, comment)) = &r {
                    info!(session = %full, rating, "session rated by the user");
                    report(AgentToRelay::Rating {
                        session_id: full.clone(),
                        rating,
                        comment: comment.clone(),
                    });
                }
                let _ = reply.send(r.map(|(full, _)| full));
            }
            Some(Cmd::Message(m, reply)) => {
                subscribers.retain(|s| !s.is_closed());
                info!(message = %m.id, technician = %m.technician, "message for the user");
                waiting_replies.insert(m.id.clone(), reply);
                book.handle_message(now, &m, !subscribers.is_empty());
            }
            Some(Cmd::Reply(id, text, reply)) => {
                let _ = reply.send(book.handle_reply(&id, &text));
            }
            Some(Cmd::Subscribe(tx)) => {
                if tx.try_send(book.snapshot(now)).is_ok() {
                    subscribers.push(tx);
                }
            }
            Some(Cmd::TechnicianEnds(technician, role, ticket, reply)) => {
                let ended = book.handle_technician_end(&technician, role, &ticket);
                info!(technician = %technician, ticket = %ticket, engagement = ?ended, "engagement ended by the technician");
                let _ = reply.send(ended);
            }
            Some(Cmd::Snapshot(reply)) => {
                let _ = reply.send(book.snapshot(now));
            }
            Some(Cmd::Notice(id, text)) => {
                info!(session = %id, "notice for the user: {text}");
                let ev = LocalEvent::Notice { id, text };
                subscribers.retain(|s| s.try_send(ev.clone()).is_ok());
            }
        }
        while let Some((id, outcome)) = book.poll_outcome() {
            info!(session = %id, "consent: {}", outcome.message());
            if let Some(w) = waiting.remove(&id) {
                let engagement = book.joining(&id).map(str::to_string);
                let _ = w.send(Decided {
                    outcome,
                    engagement,
                });
            }
        }
        while let Some((id, r)) = book.poll_reply() {
            if let Some(w) = waiting_replies.remove(&id) {
                let _ = w.send(r);
            }
        }
        while let Some(ev) = book.poll_event() {
            // A tray that cannot keep up (64 events behind) is dropped; it reconnects and
            // gets a fresh snapshot.
            subscribers.retain(|s| s.try_send(ev.clone()).is_ok());
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
