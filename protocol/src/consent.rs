//! The user's consent to a session, and the local channel it travels on.
//!
//! The agent service runs as root; the person at the desktop answers from the tray app
//! (`tether-tray`) or from a terminal (`tether-agent approve|deny|end`), both speaking
//! [`LocalRequest`] / [`LocalEvent`] over a Unix socket whose peer credentials the agent checks
//! with [`may_answer`]. [`Book`] is the agent's record of prompts waiting for an answer and of
//! sessions running, driven like the connection machines: offers, answers and the time go in,
//! outcomes and events for the tray come out.
//!
//! Invariants:
//! * deny is the default: a prompt nobody answers ends [`Outcome::TimedOut`], and with no tray
//!   app to show it (and no terminal approval allowed) an offer is refused at once;
//! * what the prompt shows about the technician (name, role) comes from the relay-signed grant,
//!   which the relay fills from the technician's certificate, never from text they typed;
//! * unattended access needs both the relay's policy flag in the grant and the `admin` role.

use crate::identity::Role;
use crate::session::{Activity, MAX_MESSAGE, MessageReply, Permissions, SessionGrant, UserMessage};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a prompt waits for the user before the session is denied.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest consent timeout an agent may be configured with (the relay waits this long, plus a
/// margin, for the answer).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// Shortest one (a user needs time to read the prompt).
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest rating comment kept.
pub const MAX_COMMENT: usize = 500;
/// Ended sessions remembered for rating.
const RECENT: usize = 32;
/// Prompts waiting at once; more are refused (a technician cannot flood the desktop).
pub const MAX_PENDING: usize = 4;
/// An engagement with nothing running ends after this long (the user is then asked to rate it).
pub const DEFAULT_ENGAGEMENT_IDLE: Duration = Duration::from_secs(15 * 60);
/// Engagements remembered at once; the one idle longest gives way.
const MAX_ENGAGEMENTS: usize = 16;

/// What the consent dialog shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub technician: String,
    pub role: Role,
    pub reason: String,
    pub ticket: String,
    pub permissions: Permissions,
    /// Seconds left when this was sent; the dialog counts down from it.
    pub seconds_left: u32,
    /// What the technician is about to do (the command line, the path).
    pub activity: Activity,
    /// The account commands and file access run as: the desktop user's name, or "root".
    /// `None` without the shell or files permission.
    pub runs_as: Option<String>,
    /// The device's policy records shells: the prompt says so.
    pub recorded: bool,
    /// What the user already allowed this technician in this engagement (this prompt asks for
    /// more); `None` for a new engagement.
    pub already: Option<Permissions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSession {
    pub id: String,
    pub technician: String,
    pub role: Role,
    pub reason: String,
    pub ticket: String,
    pub permissions: Permissions,
    pub started_unix_ms: i64,
    /// Started without a prompt, by the group's unattended policy.
    pub unattended: bool,
    /// What it is doing: the banner says it.
    pub activity: Activity,
    /// The engagement it belongs to (its own id when unattended).
    pub engagement: String,
}

/// A technician's visit for one ticket: the user approved once, and further sessions within the
/// permissions approved start without a prompt until the user or the idle time ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngagementInfo {
    /// The id of the session that started it.
    pub id: String,
    pub technician: String,
    pub role: Role,
    pub ticket: String,
    pub approved: Permissions,
    /// Sessions running in it now.
    pub running: u32,
}

/// Tray or terminal → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalRequest {
    /// Answered by a [`LocalEvent::Snapshot`], then every event until the connection closes. A
    /// connected subscriber is what lets prompts be shown at all.
    Subscribe,
    /// Answered by one [`LocalEvent::Snapshot`].
    List,
    /// `id` may be a unique prefix.
    Approve {
        id: String,
    },
    Deny {
        id: String,
    },
    End {
        id: String,
    },
    /// The user's 1–5 rating of an ended session.
    Rate {
        id: String,
        rating: u8,
        comment: String,
    },
    /// The user's answer to a technician's [`LocalEvent::Message`].
    Reply {
        id: String,
        text: String,
    },
}

/// Agent → tray or terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalEvent {
    Snapshot {
        prompts: Vec<Prompt>,
        active: Vec<ActiveSession>,
        /// Technicians' messages waiting for a reply.
        messages: Vec<ChatMessage>,
        /// Engagements open: their technicians may come back without a prompt.
        engagements: Vec<EngagementInfo>,
    },
    Prompt(Prompt),
    /// The prompt was answered (here or elsewhere) or timed out: close its dialog.
    PromptClosed {
        id: String,
        outcome: Outcome,
    },
    Started(ActiveSession),
    Ended {
        id: String,
        technician: String,
        by_user: bool,
    },
    /// An engagement began or changed (sessions started or ended in it, more was approved).
    Engagement(EngagementInfo),
    /// The engagement is over (the user ended it, or it was idle): the time to ask for a
    /// rating, once for the whole visit.
    EngagementEnded {
        id: String,
        technician: String,
        by_user: bool,
    },
    Done {
        message: String,
    },
    Error {
        message: String,
    },
    /// A technician's message to show; reply with [`LocalRequest::Reply`].
    Message(ChatMessage),
    /// The message was answered (here or elsewhere) or its time ran out: close its window.
    MessageClosed {
        id: String,
    },
    /// Something the user should know while session `id` runs, shown on its banner: the
    /// desktop is about to ask, in a dialog of its own, which screen to share.
    Notice {
        id: String,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    pub technician: String,
    pub role: Role,
    pub text: String,
    /// Seconds left to reply.
    pub seconds_left: u32,
}

/// How an offer was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Approved,
    Unattended,
    Denied,
    TimedOut,
    /// No tray app was running to ask the user.
    NoApprover,
    /// Too many prompts already waiting.
    Busy,
    /// The technician gave up before the user answered.
    Withdrawn,
    /// The user approved these permissions earlier in the same engagement.
    Continued,
}

impl Outcome {
    pub fn accepted(self) -> bool {
        matches!(
            self,
            Outcome::Approved | Outcome::Unattended | Outcome::Continued
        )
    }

    /// The line the technician sees.
    pub fn message(self) -> &'static str {
        match self {
            Outcome::Approved => "approved by the user",
            Outcome::Unattended => "unattended access by policy",
            Outcome::Denied => "denied by the user",
            Outcome::TimedOut => "denied: no answer from the user",
            Outcome::NoApprover => "denied: nobody can approve on the device (no tray app running)",
            Outcome::Busy => "denied: other requests are waiting for the user",
            Outcome::Withdrawn => "the technician cancelled the request",
            Outcome::Continued => "approved earlier in this engagement",
        }
    }
}

/// The answer to a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BookError {
    #[error("no request or session {0}")]
    Unknown(String),
    #[error("{0} matches more than one; give more of the id")]
    Ambiguous(String),
    #[error("rating must be 1 to 5")]
    BadRating,
}

/// Only the user who owns the desktop (or root, who owns the machine) answers for it.
pub fn may_answer(peer_uid: u32, desktop_uid: u32) -> bool {
    peer_uid == desktop_uid || peer_uid == 0
}

#[derive(Debug)]
struct Pending {
    grant: SessionGrant,
    deadline: Instant,
    runs_as: Option<String>,
}

#[derive(Debug)]
struct Engagement {
    info: EngagementInfo,
    /// Sessions of it running now.
    running: Vec<String>,
    /// Since when nothing has run in it (`None` while something does).
    idle_since: Option<Instant>,
}

impl Engagement {
    /// Whether a new request belongs to this engagement: same technician, role and ticket.
    fn matches(&self, g: &SessionGrant) -> bool {
        self.info.technician == g.technician
            && self.info.role == g.role
            && self.info.ticket == g.ticket
    }

    fn info(&self) -> EngagementInfo {
        EngagementInfo {
            running: u32::try_from(self.running.len()).unwrap_or(u32::MAX),
            ..self.info.clone()
        }
    }
}

#[derive(Debug)]
struct PendingMessage {
    msg: ChatMessage,
    deadline: Instant,
}

/// Messages waiting for a reply at once; more get [`MessageReply::NoTray`]-like refusals.
pub const MAX_MESSAGES: usize = 8;

/// The agent's consent state. See the module docs.
#[derive(Debug)]
pub struct Book {
    timeout: Duration,
    idle: Duration,
    pending: Vec<Pending>,
    engagements: Vec<Engagement>,
    /// Accepted offers not yet started, and the engagement each joins.
    joining: Vec<(String, String)>,
    active: Vec<ActiveSession>,
    recent: VecDeque<String>,
    outcomes: VecDeque<(String, Outcome)>,
    events: VecDeque<LocalEvent>,
    messages: Vec<PendingMessage>,
    replies: VecDeque<(String, MessageReply)>,
}

impl Book {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            idle: DEFAULT_ENGAGEMENT_IDLE,
            pending: Vec::new(),
            engagements: Vec::new(),
            joining: Vec::new(),
            active: Vec::new(),
            recent: VecDeque::new(),
            outcomes: VecDeque::new(),
            events: VecDeque::new(),
            messages: Vec::new(),
            replies: VecDeque::new(),
        }
    }

    /// How long an engagement with nothing running lasts.
    pub fn with_engagement_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// A technician's message arrived. `can_show`: a tray app is connected.
    pub fn handle_message(&mut self, now: Instant, m: &UserMessage, can_show: bool) {
        if !can_show || self.messages.len() >= MAX_MESSAGES {
            self.replies.push_back((m.id.clone(), MessageReply::NoTray));
            return;
        }
        let wait = Duration::from_millis(m.wait_ms);
        let msg = ChatMessage {
            id: m.id.clone(),
            technician: m.technician.clone(),
            role: m.role,
            text: crate::text::clean(&m.text, MAX_MESSAGE),
            seconds_left: wait.as_secs_f64().ceil() as u32,
        };
        self.events.push_back(LocalEvent::Message(msg.clone()));
        self.messages.push(PendingMessage {
            msg,
            deadline: now + wait,
        });
    }

    /// The user replied. Returns the full id.
    pub fn handle_reply(&mut self, id: &str, text: &str) -> Result<String, BookError> {
        let idx = find(self.messages.iter().map(|m| &m.msg.id), id)?;
        let m = self.messages.remove(idx);
        let text = crate::text::clean(text, MAX_MESSAGE);
        let reply = if text.trim().is_empty() {
            MessageReply::NoReply
        } else {
            MessageReply::Replied { text }
        };
        self.events.push_back(LocalEvent::MessageClosed {
            id: m.msg.id.clone(),
        });
        self.replies.push_back((m.msg.id.clone(), reply));
        Ok(m.msg.id)
    }

    /// Replies to send back to the relay, in order.
    pub fn poll_reply(&mut self) -> Option<(String, MessageReply)> {
        self.replies.pop_front()
    }

    /// A valid, relay-signed offer arrived. `can_prompt`: a tray app is connected, or answers
    /// from the terminal are allowed on this machine. `runs_as`: the account its commands and
    /// file access would run as, for the prompt.
    pub fn handle_offer(
        &mut self,
        now: Instant,
        grant: SessionGrant,
        can_prompt: bool,
        runs_as: Option<String>,
    ) {
        let id = grant.session_id.clone();
        let engagement = self
            .engagements
            .iter()
            .find(|e| e.matches(&grant))
            .map(|e| (e.info.id.clone(), e.info.approved));
        if grant.unattended && grant.role == Role::Admin {
            self.outcomes.push_back((id, Outcome::Unattended));
        } else if let Some((eid, _)) = engagement
            .as_ref()
            .filter(|(_, approved)| approved.contains(grant.permissions))
        {
            self.joining.push((id.clone(), eid.clone()));
            self.outcomes.push_back((id, Outcome::Continued));
        } else if !can_prompt {
            self.outcomes.push_back((id, Outcome::NoApprover));
        } else if self.pending.len() >= MAX_PENDING {
            self.outcomes.push_back((id, Outcome::Busy));
        } else {
            let deadline = now + self.timeout;
            let p = Pending {
                grant,
                deadline,
                runs_as,
            };
            let prompt = prompt(&p, now, engagement.map(|(_, a)| a));
            self.pending.push(p);
            self.events.push_back(LocalEvent::Prompt(prompt));
        }
    }

    /// The engagement an approved request joins: the matching one, widened to what was just
    /// approved, or a new one.
    fn engage(&mut self, now: Instant, grant: &SessionGrant) {
        let id = match self.engagements.iter_mut().find(|e| e.matches(grant)) {
            Some(e) => {
                e.info.approved = e.info.approved.union(grant.permissions);
                e.info.id.clone()
            }
            None => {
                if self.engagements.len() >= MAX_ENGAGEMENTS {
                    self.expire_oldest_idle();
                }
                self.engagements.push(Engagement {
                    info: EngagementInfo {
                        id: grant.session_id.clone(),
                        technician: grant.technician.clone(),
                        role: grant.role,
                        ticket: grant.ticket.clone(),
                        approved: grant.permissions,
                        running: 0,
                    },
                    running: Vec::new(),
                    idle_since: Some(now),
                });
                grant.session_id.clone()
            }
        };
        self.joining.push((grant.session_id.clone(), id.clone()));
        if let Some(e) = self.engagements.iter().find(|e| e.info.id == id) {
            self.events.push_back(LocalEvent::Engagement(e.info()));
        }
    }

    fn expire_oldest_idle(&mut self) {
        let oldest = self
            .engagements
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.idle_since.map(|t| (t, i)))
            .min();
        if let Some((_, i)) = oldest {
            self.end_engagement(i, false);
        }
    }

    fn end_engagement(&mut self, idx: usize, by_user: bool) -> Engagement {
        let e = self.engagements.remove(idx);
        self.remember(e.info.id.clone());
        self.events.push_back(LocalEvent::EngagementEnded {
            id: e.info.id.clone(),
            technician: e.info.technician.clone(),
            by_user,
        });
        e
    }

    fn remember(&mut self, id: String) {
        if self.recent.contains(&id) {
            return;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// The user answered. Returns the full id of the request answered.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        id: &str,
        answer: Answer,
    ) -> Result<String, BookError> {
        let idx = find(self.pending.iter().map(|p| &p.grant.session_id), id)?;
        let p = self.pending.remove(idx);
        let outcome = match answer {
            Answer::Approve => {
                self.engage(now, &p.grant);
                Outcome::Approved
            }
            Answer::Deny => Outcome::Denied,
        };
        self.close(p.grant.session_id.clone(), outcome);
        Ok(p.grant.session_id)
    }

    /// The technician went away before the user answered: close the prompt.
    pub fn handle_withdrawn(&mut self, id: &str) {
        if let Some(idx) = self.pending.iter().position(|p| p.grant.session_id == id) {
            let p = self.pending.remove(idx);
            self.close(p.grant.session_id, Outcome::Withdrawn);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|p| p.deadline <= now);
        self.pending = kept;
        for p in expired {
            self.close(p.grant.session_id, Outcome::TimedOut);
        }
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.messages.drain(..).partition(|m| m.deadline <= now);
        self.messages = kept;
        for m in expired {
            self.events.push_back(LocalEvent::MessageClosed {
                id: m.msg.id.clone(),
            });
            self.replies.push_back((m.msg.id, MessageReply::NoReply));
        }
        while let Some(i) = self
            .engagements
            .iter()
            .position(|e| e.idle_since.is_some_and(|t| t + self.idle <= now))
        {
            self.end_engagement(i, false);
        }
    }

    fn close(&mut self, id: String, outcome: Outcome) {
        self.events.push_back(LocalEvent::PromptClosed {
            id: id.clone(),
            outcome,
        });
        self.outcomes.push_back((id, outcome));
    }

    /// When [`Book::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.deadline)
            .chain(self.messages.iter().map(|m| m.deadline))
            .chain(
                self.engagements
                    .iter()
                    .filter_map(|e| e.idle_since.map(|t| t + self.idle)),
            )
            .min()
    }

    /// Decisions to send back to the relay, in order.
    pub fn poll_outcome(&mut self) -> Option<(String, Outcome)> {
        self.outcomes.pop_front()
    }

    /// Events for the connected tray apps, in order.
    pub fn poll_event(&mut self) -> Option<LocalEvent> {
        self.events.pop_front()
    }

    /// The engagement an accepted offer joins, until it starts.
    pub fn joining(&self, session_id: &str) -> Option<&str> {
        self.joining
            .iter()
            .find(|(s, _)| s == session_id)
            .map(|(_, e)| e.as_str())
    }

    /// The session behind an accepted offer is now running.
    pub fn handle_started(&mut self, grant: &SessionGrant, unattended: bool, now_unix_ms: i64) {
        let engagement = match self
            .joining
            .iter()
            .position(|(s, _)| *s == grant.session_id)
        {
            Some(i) => self.joining.remove(i).1,
            None => grant.session_id.clone(),
        };
        if let Some(e) = self
            .engagements
            .iter_mut()
            .find(|e| e.info.id == engagement)
        {
            e.running.push(grant.session_id.clone());
            e.idle_since = None;
            let info = e.info();
            self.events.push_back(LocalEvent::Engagement(info));
        }
        let s = ActiveSession {
            id: grant.session_id.clone(),
            technician: grant.technician.clone(),
            role: grant.role,
            reason: grant.reason.clone(),
            ticket: grant.ticket.clone(),
            permissions: grant.permissions,
            started_unix_ms: now_unix_ms,
            unattended,
            activity: grant.activity.clone(),
            engagement,
        };
        self.active.push(s.clone());
        self.events.push_back(LocalEvent::Started(s));
    }

    pub fn handle_ended(&mut self, now: Instant, id: &str, by_user: bool) {
        // An accepted offer that never started leaves nothing behind.
        self.joining.retain(|(s, _)| s != id);
        let Some(idx) = self.active.iter().position(|s| s.id == id) else {
            return;
        };
        let s = self.active.remove(idx);
        self.remember(s.id.clone());
        if let Some(e) = self
            .engagements
            .iter_mut()
            .find(|e| e.info.id == s.engagement)
        {
            e.running.retain(|r| *r != s.id);
            if e.running.is_empty() {
                e.idle_since = Some(now);
            }
            let info = e.info();
            self.events.push_back(LocalEvent::Engagement(info));
        }
        self.events.push_back(LocalEvent::Ended {
            id: s.id,
            technician: s.technician,
            by_user,
        });
    }

    /// The technician ends their engagement for `ticket`; its running sessions go on until they
    /// end. Returns its id, if one was open.
    pub fn handle_technician_end(
        &mut self,
        technician: &str,
        role: Role,
        ticket: &str,
    ) -> Option<String> {
        let i = self.engagements.iter().position(|e| {
            e.info.technician == technician && e.info.role == role && e.info.ticket == ticket
        })?;
        Some(self.end_engagement(i, false).info.id)
    }

    /// The user ends `id` (or a unique prefix of it): a running session or an engagement, and
    /// with either the whole engagement. Returns the full id and the sessions to stop.
    pub fn handle_end(&mut self, id: &str) -> Result<(String, Vec<String>), BookError> {
        let mut ids: Vec<&String> = self.active.iter().map(|s| &s.id).collect();
        for e in &self.engagements {
            if !ids.contains(&&e.info.id) {
                ids.push(&e.info.id);
            }
        }
        let full = ids[find(ids.iter().copied(), id)?].clone();
        let engagement = match self.active.iter().find(|s| s.id == full) {
            Some(s) => s.engagement.clone(),
            None => full.clone(),
        };
        let mut stop: Vec<String> = self
            .active
            .iter()
            .filter(|s| s.engagement == engagement || s.id == full)
            .map(|s| s.id.clone())
            .collect();
        if let Some(i) = self
            .engagements
            .iter()
            .position(|e| e.info.id == engagement)
        {
            let e = self.end_engagement(i, true);
            for r in e.running {
                if !stop.contains(&r) {
                    stop.push(r);
                }
            }
        }
        Ok((full, stop))
    }

    /// Checks a rating: the session must have run here recently (or still run). Returns the full
    /// id and the cleaned comment.
    pub fn check_rating(
        &self,
        id: &str,
        rating: u8,
        comment: &str,
    ) -> Result<(String, String), BookError> {
        if !(1..=5).contains(&rating) {
            return Err(BookError::BadRating);
        }
        let ids = self
            .recent
            .iter()
            .chain(self.active.iter().map(|s| &s.id))
            .chain(self.engagements.iter().map(|e| &e.info.id));
        let full = find(ids.clone(), id).map(|i| ids.clone().nth(i).cloned())?;
        let full = full.ok_or_else(|| BookError::Unknown(id.to_string()))?;
        Ok((full, crate::text::clean(comment, MAX_COMMENT)))
    }

    pub fn snapshot(&self, now: Instant) -> LocalEvent {
        LocalEvent::Snapshot {
            prompts: self
                .pending
                .iter()
                .map(|p| {
                    let already = self
                        .engagements
                        .iter()
                        .find(|e| e.matches(&p.grant))
                        .map(|e| e.info.approved);
                    prompt(p, now, already)
                })
                .collect(),
            active: self.active.clone(),
            messages: self
                .messages
                .iter()
                .map(|m| ChatMessage {
                    seconds_left: m
                        .deadline
                        .saturating_duration_since(now)
                        .as_secs_f64()
                        .ceil() as u32,
                    ..m.msg.clone()
                })
                .collect(),
            engagements: self.engagements.iter().map(Engagement::info).collect(),
        }
    }
}

fn prompt(p: &Pending, now: Instant, already: Option<Permissions>) -> Prompt {
    let grant = &p.grant;
    Prompt {
        id: grant.session_id.clone(),
        technician: grant.technician.clone(),
        role: grant.role,
        reason: grant.reason.clone(),
        ticket: grant.ticket.clone(),
        permissions: grant.permissions,
        seconds_left: p
            .deadline
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil() as u32,
        activity: grant.activity.clone(),
        runs_as: p.runs_as.clone(),
        recorded: grant.record_shell && grant.permissions.shell,
        already,
    }
}

/// Index of the one id equal to `key` or starting with it.
fn find<'a>(ids: impl Iterator<Item = &'a String> + Clone, key: &str) -> Result<usize, BookError> {
    if key.is_empty() {
        return Err(BookError::Unknown(String::new()));
    }
    if let Some(i) = ids.clone().position(|id| id == key) {
        return Ok(i);
    }
    // The same id may be listed twice (a session and the engagement it started).
    let mut hits = ids.enumerate().filter(|(_, id)| id.starts_with(key));
    let Some((i, first)) = hits.next() else {
        return Err(BookError::Unknown(key.to_string()));
    };
    if hits.any(|(_, id)| id != first) {
        return Err(BookError::Ambiguous(key.to_string()));
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request from `technician` for `ticket` with `permissions`.
    fn ask(id: &str, technician: &str, ticket: &str, permissions: Permissions) -> SessionGrant {
        SessionGrant {
            technician: technician.into(),
            ticket: ticket.into(),
            permissions,
            ..grant(id, Role::Support, false)
        }
    }

    fn outcomes(b: &mut Book) -> Vec<(String, Outcome)> {
        std::iter::from_fn(|| b.poll_outcome()).collect()
    }

    fn prompts(evs: &[LocalEvent]) -> usize {
        evs.iter()
            .filter(|e| matches!(e, LocalEvent::Prompt(_)))
            .count()
    }

    #[test]
    fn one_approval_per_engagement_until_more_is_asked() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        b.handle_offer(t0, ask("s1", "alice", "T-1", Permissions::FULL), true, None);
        assert_eq!(prompts(&events(&mut b)), 1);
        b.handle_answer(t0, "s1", Answer::Approve).unwrap();
        b.handle_started(&ask("s1", "alice", "T-1", Permissions::FULL), false, 1);
        b.handle_ended(t0, "s1", false);
        // Within what was approved: no prompt.
        b.handle_offer(t0, ask("s2", "alice", "T-1", Permissions::VIEW), true, None);
        let evs = events(&mut b);
        assert_eq!(prompts(&evs), 0);
        assert!(
            !evs.iter()
                .any(|e| matches!(e, LocalEvent::EngagementEnded { .. }))
        );
        assert_eq!(
            outcomes(&mut b),
            [
                ("s1".into(), Outcome::Approved),
                ("s2".into(), Outcome::Continued)
            ]
        );
        b.handle_started(&ask("s2", "alice", "T-1", Permissions::VIEW), false, 2);
        match &events(&mut b)[..] {
            [LocalEvent::Engagement(e), LocalEvent::Started(s)] => {
                assert_eq!((e.id.as_str(), e.running), ("s1", 1));
                assert_eq!(s.engagement, "s1");
            }
            other => panic!("{other:?}"),
        }
        // A permission not yet approved: asked again, saying what was approved already.
        b.handle_offer(
            t0,
            ask("s3", "alice", "T-1", Permissions::SHELL),
            true,
            Some("sam".into()),
        );
        match &events(&mut b)[..] {
            [LocalEvent::Prompt(p)] => {
                assert_eq!(p.already, Some(Permissions::FULL));
                assert_eq!(p.runs_as.as_deref(), Some("sam"));
            }
            other => panic!("{other:?}"),
        }
        b.handle_answer(t0, "s3", Answer::Approve).unwrap();
        b.handle_offer(
            t0,
            ask("s4", "alice", "T-1", Permissions::SHELL),
            true,
            None,
        );
        assert_eq!(prompts(&events(&mut b)), 0);
        // Another technician, or another ticket, is another engagement.
        b.handle_offer(t0, ask("s5", "bob", "T-1", Permissions::VIEW), true, None);
        b.handle_offer(t0, ask("s6", "alice", "T-2", Permissions::VIEW), true, None);
        assert_eq!(prompts(&events(&mut b)), 2);
        let o = outcomes(&mut b);
        assert_eq!(o[o.len() - 1], ("s4".into(), Outcome::Continued));
    }

    #[test]
    fn an_idle_engagement_ends_once_and_asks_for_one_rating() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(900);
        let mut b = Book::new(DEFAULT_TIMEOUT).with_engagement_idle(idle);
        b.handle_offer(t0, ask("s1", "alice", "T-1", Permissions::FULL), true, None);
        b.handle_answer(t0, "s1", Answer::Approve).unwrap();
        for id in ["s1", "s2", "s3"] {
            if id != "s1" {
                b.handle_offer(t0, ask(id, "alice", "T-1", Permissions::VIEW), true, None);
            }
            b.handle_started(&ask(id, "alice", "T-1", Permissions::VIEW), false, 1);
            b.handle_ended(t0, id, false);
        }
        let ended = |evs: &[LocalEvent]| {
            evs.iter()
                .filter(|e| matches!(e, LocalEvent::EngagementEnded { .. }))
                .count()
        };
        assert_eq!(ended(&events(&mut b)), 0);
        assert_eq!(b.poll_timeout(), Some(t0 + idle));
        b.handle_timeout(t0 + idle - Duration::from_secs(1));
        assert_eq!(ended(&events(&mut b)), 0);
        b.handle_timeout(t0 + idle);
        assert!(matches!(
            &events(&mut b)[..],
            [LocalEvent::EngagementEnded { id, by_user: false, .. }] if id == "s1"
        ));
        assert_eq!(b.poll_timeout(), None);
        assert!(b.check_rating("s1", 5, "").is_ok());
        // After it, the same technician and ticket ask again.
        b.handle_offer(
            t0 + idle,
            ask("s4", "alice", "T-1", Permissions::VIEW),
            true,
            None,
        );
        assert_eq!(prompts(&events(&mut b)), 1);
    }

    #[test]
    fn ending_any_session_ends_its_engagement_and_every_session_in_it() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        b.handle_offer(t0, ask("e1", "alice", "T-1", Permissions::FULL), true, None);
        b.handle_answer(t0, "e1", Answer::Approve).unwrap();
        b.handle_offer(t0, ask("e2", "alice", "T-1", Permissions::VIEW), true, None);
        b.handle_offer(t0, ask("x1", "bob", "T-9", Permissions::VIEW), true, None);
        b.handle_answer(t0, "x1", Answer::Approve).unwrap();
        for (id, who, ticket) in [
            ("e1", "alice", "T-1"),
            ("e2", "alice", "T-1"),
            ("x1", "bob", "T-9"),
        ] {
            b.handle_started(&ask(id, who, ticket, Permissions::VIEW), false, 1);
        }
        events(&mut b);
        let (full, mut stop) = b.handle_end("e2").unwrap();
        stop.sort();
        assert_eq!(
            (full.as_str(), stop),
            ("e2", vec!["e1".to_string(), "e2".to_string()])
        );
        assert!(matches!(
            &events(&mut b)[..],
            [LocalEvent::EngagementEnded { id, by_user: true, .. }] if id == "e1"
        ));
        // The sessions then end; bob's engagement is untouched.
        b.handle_ended(t0, "e1", true);
        b.handle_ended(t0, "e2", true);
        assert_eq!(
            b.handle_end("x").map(|(f, s)| (f, s.len())),
            Ok(("x1".into(), 1))
        );
        // Ended, so a new request prompts again.
        b.handle_offer(t0, ask("e3", "alice", "T-1", Permissions::VIEW), true, None);
        assert!(
            events(&mut b)
                .iter()
                .any(|e| matches!(e, LocalEvent::Prompt(_)))
        );
        // The technician ends only an engagement of their own.
        b.handle_answer(t0, "e3", Answer::Approve).unwrap();
        assert_eq!(b.handle_technician_end("bob", Role::Support, "T-1"), None);
        assert_eq!(b.handle_technician_end("alice", Role::Admin, "T-1"), None);
        assert_eq!(
            b.handle_technician_end("alice", Role::Support, "T-1"),
            Some("e3".into())
        );
        assert_eq!(b.handle_technician_end("alice", Role::Support, "T-1"), None);
    }

    fn grant(id: &str, role: Role, unattended: bool) -> SessionGrant {
        SessionGrant {
            session_id: id.into(),
            device_id: "d".into(),
            technician: "alice".into(),
            role,
            permissions: Permissions::FULL,
            reason: "printer".into(),
            ticket: "T-1".into(),
            issued_at_unix_ms: 0,
            expires_at_unix_ms: 1,
            unattended,
            record_shell: false,
            activity: Activity::Screen,
        }
    }

    fn events(b: &mut Book) -> Vec<LocalEvent> {
        std::iter::from_fn(|| b.poll_event()).collect()
    }

    #[test]
    fn unanswered_prompt_is_denied_at_the_deadline_not_before() {
        let t0 = Instant::now();
        let mut b = Book::new(Duration::from_secs(30));
        b.handle_offer(t0, grant("s1", Role::Support, false), true, None);
        assert!(
            matches!(&events(&mut b)[..], [LocalEvent::Prompt(p)] if p.seconds_left == 30 && p.technician == "alice")
        );
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        b.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(b.poll_outcome(), None);
        b.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(b.poll_outcome(), Some(("s1".into(), Outcome::TimedOut)));
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(
            b.handle_answer(t0, "s1", Answer::Approve),
            Err(BookError::Unknown("s1".into()))
        );
    }

    #[test]
    fn answers_by_unique_prefix() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        b.handle_offer(t0, grant("abc1", Role::Support, false), true, None);
        b.handle_offer(t0, grant("abd2", Role::Support, false), true, None);
        assert_eq!(
            b.handle_answer(t0, "ab", Answer::Approve),
            Err(BookError::Ambiguous("ab".into()))
        );
        assert_eq!(b.handle_answer(t0, "abd", Answer::Deny), Ok("abd2".into()));
        assert_eq!(
            b.handle_answer(t0, "abc1", Answer::Approve),
            Ok("abc1".into())
        );
        assert_eq!(b.poll_outcome(), Some(("abd2".into(), Outcome::Denied)));
        assert_eq!(b.poll_outcome(), Some(("abc1".into(), Outcome::Approved)));
        assert!(b.handle_answer(t0, "", Answer::Approve).is_err());
    }

    #[test]
    fn no_tray_means_no_and_unattended_needs_admin_and_policy() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        b.handle_offer(t0, grant("a", Role::Support, false), false, None);
        b.handle_offer(t0, grant("b", Role::Support, true), false, None);
        b.handle_offer(t0, grant("c", Role::Admin, true), false, None);
        b.handle_offer(t0, grant("d", Role::Admin, false), false, None);
        let got: Vec<_> = std::iter::from_fn(|| b.poll_outcome()).collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), Outcome::NoApprover),
                ("b".into(), Outcome::NoApprover),
                ("c".into(), Outcome::Unattended),
                ("d".into(), Outcome::NoApprover),
            ]
        );
    }

    #[test]
    fn a_withdrawn_request_closes_its_prompt() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        b.handle_offer(t0, grant("s1", Role::Support, false), true, None);
        b.handle_withdrawn("s1");
        b.handle_withdrawn("s1");
        assert_eq!(b.poll_outcome(), Some(("s1".into(), Outcome::Withdrawn)));
        assert_eq!(b.poll_outcome(), None);
        assert!(matches!(
            &events(&mut b)[..],
            [
                LocalEvent::Prompt(_),
                LocalEvent::PromptClosed {
                    outcome: Outcome::Withdrawn,
                    ..
                }
            ]
        ));
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn pending_prompts_are_bounded() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        for i in 0..=MAX_PENDING {
            b.handle_offer(
                t0,
                grant(&format!("s{i}"), Role::Support, false),
                true,
                None,
            );
        }
        assert_eq!(
            b.poll_outcome(),
            Some((format!("s{MAX_PENDING}"), Outcome::Busy))
        );
        assert!(
            matches!(b.snapshot(t0), LocalEvent::Snapshot { prompts, .. } if prompts.len() == MAX_PENDING)
        );
    }

    #[test]
    fn ratings_only_for_sessions_that_ran_here() {
        let mut b = Book::new(DEFAULT_TIMEOUT);
        let g = grant("sess-1", Role::Support, false);
        assert!(b.check_rating("sess-1", 5, "").is_err());
        b.handle_started(&g, false, 10);
        b.handle_ended(Instant::now(), "sess-1", true);
        assert!(matches!(
            &events(&mut b)[..],
            [
                LocalEvent::Started(_),
                LocalEvent::Ended { by_user: true, .. }
            ]
        ));
        assert_eq!(b.check_rating("sess", 0, ""), Err(BookError::BadRating));
        assert_eq!(b.check_rating("sess", 6, ""), Err(BookError::BadRating));
        assert_eq!(
            b.check_rating("sess", 4, "quick\u{7}fix"),
            Ok(("sess-1".into(), "quickfix".into()))
        );
        assert!(b.check_rating("other", 4, "").is_err());
    }

    #[test]
    fn messages_get_a_reply_or_none_after_their_time() {
        let t0 = Instant::now();
        let mut b = Book::new(DEFAULT_TIMEOUT);
        let msg = |id: &str| UserMessage {
            id: id.into(),
            technician: "ana".into(),
            role: Role::Support,
            text: "Please save your work\u{1b}[2J".into(),
            wait_ms: 60_000,
        };
        b.handle_message(t0, &msg("m0"), false);
        assert_eq!(b.poll_reply(), Some(("m0".into(), MessageReply::NoTray)));
        b.handle_message(t0, &msg("m1"), true);
        b.handle_message(t0, &msg("m2"), true);
        assert!(
            matches!(&events(&mut b)[..], [LocalEvent::Message(m), LocalEvent::Message(_)]
            if m.text == "Please save your work[2J" && m.seconds_left == 60)
        );
        assert_eq!(b.handle_reply("m1", "ok, go ahead"), Ok("m1".into()));
        assert_eq!(
            b.poll_reply(),
            Some((
                "m1".into(),
                MessageReply::Replied {
                    text: "ok, go ahead".into()
                }
            ))
        );
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        b.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(b.poll_reply(), Some(("m2".into(), MessageReply::NoReply)));
        assert!(b.handle_reply("m2", "late").is_err());
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn only_the_desktop_owner_or_root_may_answer() {
        assert!(may_answer(1000, 1000));
        assert!(may_answer(0, 1000));
        assert!(!may_answer(1001, 1000));
    }
}
