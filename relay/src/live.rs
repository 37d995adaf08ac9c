//! Sessions running right now, for what an agent may report about them.
//!
//! An agent's `SessionAction`s and shell transcripts are accepted only for a session that runs
//! on that very device now (or ended less than [`GRACE`] ago, so the reports of its last
//! moments still arrive), transcripts only when the grant said `record_shell`. Per session the
//! relay keeps at most [`MAX_TRANSCRIPT`] bytes of transcript over all its streams, and at most
//! [`MAX_ACTIONS`] actions at no more than [`ACTION_RATE`] a second (after a burst of
//! [`ACTION_BURST`]). The registry lives in memory: a relay restart ends every session, so none
//! survives one. Entries are dropped [`GRACE`] after their session ended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tether_protocol::message::MAX_TRANSCRIPT;

/// How long after its end a session still takes its agent's reports (the last command's exit,
/// the tail of a transcript arrive a moment after the splice ends).
pub const GRACE: Duration = Duration::from_secs(5);
/// Most actions recorded per session. One per command, shell, transfer or file pulled: a long
/// session of hand-typed work is a few hundred.
pub const MAX_ACTIONS: u32 = 20_000;
/// Sustained actions per second per session (a tree pull of small files is the fastest honest
/// source), after a burst of [`ACTION_BURST`].
pub const ACTION_RATE: f64 = 50.0;
pub const ACTION_BURST: f64 = 1_000.0;
/// Transcript streams of one session open at once (a shell reopened while the previous one's
/// stream drains).
pub const MAX_TRANSCRIPT_STREAMS: u32 = 2;

struct Entry {
    device: String,
    record_shell: bool,
    ended: Option<Instant>,
    transcript_bytes: u64,
    transcript_streams: u32,
    actions: u32,
    tokens: f64,
    refilled: Instant,
    /// Whether the drop of an action was already noted on the record.
    noted_drop: bool,
}

impl Entry {
    fn open(&self, now: Instant) -> bool {
        self.ended.is_none_or(|e| now.duration_since(e) < GRACE)
    }
}

#[derive(Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<String, Entry>>,
}

/// What to do with an agent's `SessionAction`.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Record,
    /// Over the session's cap or rate: not recorded. `note` is set once per session, for a
    /// line on the record saying so.
    Drop {
        note: Option<String>,
    },
    /// No such session runs on this device.
    Unknown,
}

/// Why a transcript stream is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    NotRecorded,
    TooManyStreams,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Unknown => "no such session runs on this device",
            Refused::NotRecorded => "the session's shell is not recorded",
            Refused::TooManyStreams => "too many transcript streams for the session",
        })
    }
}

/// Whether a transcript chunk may be written.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Write,
    /// The session's transcript is full.
    Full,
    /// The session ended more than [`GRACE`] ago.
    Ended,
}

impl LiveSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session the agent accepted; it ends when the guard is dropped.
    pub fn start(&self, id: &str, device: &str, record_shell: bool) -> Running<'_> {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, e| e.open(now));
        map.insert(
            id.to_string(),
            Entry {
                device: device.to_string(),
                record_shell,
                ended: None,
                transcript_bytes: 0,
                transcript_streams: 0,
                actions: 0,
                tokens: ACTION_BURST,
                refilled: now,
                noted_drop: false,
            },
        );
        Running {
            sessions: self,
            id: id.to_string(),
        }
    }

    fn end(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.ended = Some(Instant::now());
        }
    }

    /// Decides on one `SessionAction` from `device`.
    pub fn action(&self, id: &str, device: &str) -> Action {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(e) = map
            .get_mut(id)
            .filter(|e| e.device == device && e.open(now))
        else {
            return Action::Unknown;
        };
        let secs = now.duration_since(e.refilled).as_secs_f64();
        e.tokens = (e.tokens + secs * ACTION_RATE).min(ACTION_BURST);
        e.refilled = now;
        let over = if e.actions >= MAX_ACTIONS {
            Some(format!(
                "further actions not recorded: more than {MAX_ACTIONS} in one session"
            ))
        } else if e.tokens < 1.0 {
            Some(format!(
                "actions not recorded: the agent reported more than {ACTION_RATE} a second"
            ))
        } else {
            None
        };
        match over {
            None => {
                e.tokens -= 1.0;
                e.actions += 1;
                Action::Record
            }
            Some(why) => Action::Drop {
                note: (!std::mem::replace(&mut e.noted_drop, true)).then_some(why),
            },
        }
    }

    /// Admits a transcript stream of `device` for session `id`.
    pub fn open_transcript(&self, id: &str, device: &str) -> Result<Transcript<'_>, Refused> {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(e) = map
            .get_mut(id)
            .filter(|e| e.device == device && e.open(now))
        else {
            return Err(Refused::Unknown);
        };
        if !e.record_shell {
            return Err(Refused::NotRecorded);
        }
        if e.transcript_streams >= MAX_TRANSCRIPT_STREAMS {
            return Err(Refused::TooManyStreams);
        }
        e.transcript_streams += 1;
        Ok(Transcript {
            sessions: self,
            id: id.to_string(),
        })
    }
}

/// A running session; dropping it marks the session ended.
pub struct Running<'a> {
    sessions: &'a LiveSessions,
    id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.sessions.end(&self.id);
    }
}

/// An admitted transcript stream.
pub struct Transcript<'a> {
    sessions: &'a LiveSessions,
    id: String,
}

impl Transcript<'_> {
    /// Claims `n` bytes of the session's transcript budget.
    pub fn claim(&self, n: u64) -> Chunk {
        let now = Instant::now();
        let mut map = self.sessions.lock();
        let Some(e) = map.get_mut(&self.id).filter(|e| e.open(now)) else {
            return Chunk::Ended;
        };
        if e.transcript_bytes.saturating_add(n) > MAX_TRANSCRIPT {
            return Chunk::Full;
        }
        e.transcript_bytes += n;
        Chunk::Write
    }

    /// Whether the session still takes transcript bytes.
    pub fn open(&self) -> bool {
        let now = Instant::now();
        self.sessions
            .lock()
            .get(&self.id)
            .is_some_and(|e| e.open(now))
    }
}

impl Drop for Transcript<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.sessions.lock().get_mut(&self.id) {
            e.transcript_streams = e.transcript_streams.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_for_running_sessions_of_that_device() {
        let live = LiveSessions::default();
        assert_eq!(live.action("s", "d"), Action::Unknown);
        let running = live.start("s", "d", false);
        assert_eq!(live.action("s", "d"), Action::Record);
        assert_eq!(live.action("s", "other"), Action::Unknown);
        assert_eq!(
            live.open_transcript("s", "d").err(),
            Some(Refused::NotRecorded)
        );
        drop(running);
        // Within the grace the tail still arrives.
        assert_eq!(live.action("s", "d"), Action::Record);
    }

    #[test]
    fn actions_are_rate_limited_and_capped() {
        let live = LiveSessions::default();
        let _running = live.start("s", "d", false);
        let mut recorded = 0;
        let mut notes = 0;
        for _ in 0..5_000 {
            match live.action("s", "d") {
                Action::Record => recorded += 1,
                Action::Drop { note } => notes += usize::from(note.is_some()),
                Action::Unknown => panic!("unknown"),
            }
        }
        assert!(
            (1_000..1_100).contains(&recorded),
            "{recorded} recorded in a burst"
        );
        assert_eq!(notes, 1);
    }

    #[test]
    fn transcript_budget_is_per_session() {
        let live = LiveSessions::default();
        let _running = live.start("s", "d", true);
        let a = live.open_transcript("s", "d").unwrap();
        let b = live.open_transcript("s", "d").unwrap();
        assert_eq!(
            live.open_transcript("s", "d").err(),
            Some(Refused::TooManyStreams)
        );
        assert_eq!(a.claim(MAX_TRANSCRIPT - 10), Chunk::Write);
        assert_eq!(b.claim(11), Chunk::Full);
        assert_eq!(b.claim(10), Chunk::Write);
        drop(a);
        assert!(live.open_transcript("s", "d").is_ok());
    }
}
