//! The portal session's state machine, free of I/O so its decisions are tested in memory.
//!
//! ```text
//! Idle → Creating → Selecting → Starting → Opening → Streaming
//!            ↘          ↘           ↘          ↘
//!                  Failed(reason) | Cancelled
//! ```
//! The driver ([`super`]) makes the call each state stands for — `CreateSession`;
//! `SelectDevices` (keyboard and pointer, persist mode, restore token) and `SelectSources`
//! (monitors, several, cursor mode); `Start` (the portal's dialog, unless it accepts the
//! token); `OpenPipeWireRemote` — and feeds what came back as an [`Event`]. [`Machine::on`]
//! answers with the next [`Step`]: go on, start over (closing the portal session first), done,
//! or stop with the error for the agent.
//!
//! Retries, each at most once per connect: a restore token the portal chokes on (a call fails,
//! the request ends with "other", or the session starts without a stream) is forgotten and the
//! flow runs again without it; a portal that rejects persistence itself (`InvalidArgument` while
//! selecting — older portals, or backends that refuse to persist remote control) is asked
//! again without it, at the price of its dialog every time. A user's "cancel" is never retried.

use std::fmt;
use tether_protocol::helper::HelperError;
use tether_protocol::session::DisplayInfo;

/// One shared monitor as the portal describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// The PipeWire node to read frames from, also the target of absolute pointer motion.
    pub node_id: u32,
    /// Top-left corner in the compositor's logical space.
    pub position: (i32, i32),
    /// Width and height; (0, 0) when the portal did not say.
    pub size: (u32, u32),
}

impl StreamInfo {
    /// From the portal's stream properties, which are optional and signed.
    pub fn new(node_id: u32, position: Option<(i32, i32)>, size: Option<(i32, i32)>) -> Self {
        let side = |v: i32| u32::try_from(v).unwrap_or(0);
        StreamInfo {
            node_id,
            position: position.unwrap_or((0, 0)),
            size: size.map_or((0, 0), |(w, h)| (side(w), side(h))),
        }
    }
}

/// The displays for the agent: the streams in the portal's order, the first being primary.
pub fn displays(streams: &[StreamInfo]) -> Vec<DisplayInfo> {
    streams
        .iter()
        .zip(0u32..)
        .map(|(s, index)| DisplayInfo {
            index,
            width: s.size.0,
            height: s.size.1,
            primary: index == 0,
        })
        .collect()
}

/// How a portal request ended (`org.freedesktop.portal.Request::Response`'s code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// 0
    Success,
    /// 1: the user dismissed the dialog.
    Cancelled,
    /// 2 (and anything unknown): ended some other way.
    Other,
}

impl Response {
    pub fn from_code(code: u32) -> Response {
        match code {
            0 => Response::Success,
            1 => Response::Cancelled,
            _ => Response::Other,
        }
    }
}

/// What one run of the flow sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The restore token handed to `SelectDevices`.
    pub restore_token: Option<String>,
    /// Ask for persist mode "until explicitly revoked" (else "do not persist").
    pub persist: bool,
}

/// Where the flow is. `F` is the PipeWire remote's descriptor (`()` in tests).
#[derive(Debug)]
pub enum State<F> {
    Idle,
    Creating,
    Selecting,
    Starting,
    /// Started; the PipeWire remote is being opened.
    Opening {
        streams: Vec<StreamInfo>,
    },
    Streaming {
        streams: Vec<StreamInfo>,
        fd: F,
    },
    Failed(String),
    Cancelled,
}

impl<F> State<F> {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Creating => "creating",
            State::Selecting => "selecting",
            State::Starting => "starting",
            State::Opening { .. } => "opening",
            State::Streaming { .. } => "streaming",
            State::Failed(_) => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

/// What came back from the portal.
#[derive(Debug)]
pub enum Event<F> {
    /// `CreateSession` succeeded.
    Created,
    /// `SelectDevices` and `SelectSources` succeeded.
    Selected,
    /// `Start` succeeded.
    Started {
        streams: Vec<StreamInfo>,
        restore_token: Option<String>,
    },
    /// `OpenPipeWireRemote` gave the remote.
    Opened(F),
    /// A request ended with a response other than success.
    Answered(Response),
    /// A call failed (D-Bus error, portal error).
    CallFailed(CallError),
}

/// A failed call, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// `org.freedesktop.portal.Error.InvalidArgument`.
    pub invalid_argument: bool,
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make the call of the new state.
    Continue,
    /// Close this portal session and run the flow again from [`Machine::begin`]; delete the
    /// stored token first when `forget_token`.
    Retry { forget_token: bool },
    /// Streaming. Store `save_token` when given: tokens are single-use, this one replaces the
    /// one just spent.
    Streaming { save_token: Option<String> },
    /// Failed or cancelled: close the portal session and give the agent this.
    Stop(HelperError),
}

/// The message the agent gets when the user dismissed the portal's dialog.
pub const CANCELLED: &str = "the desktop's sharing dialog was cancelled (the user at the \
     computer declined to share the screen and input through the desktop portal)";

#[derive(Debug)]
pub struct Machine<F> {
    state: State<F>,
    attempt: Attempt,
    retried_without_token: bool,
    retried_without_persist: bool,
    new_token: Option<String>,
}

impl<F> Machine<F> {
    /// Idle, with the stored token if any.
    pub fn new(restore_token: Option<String>) -> Self {
        Machine {
            state: State::Idle,
            attempt: Attempt {
                restore_token,
                persist: true,
            },
            retried_without_token: false,
            retried_without_persist: false,
            new_token: None,
        }
    }

    pub fn state(&self) -> &State<F> {
        &self.state
    }

    /// Idle → Creating: what to send this time.
    pub fn begin(&mut self) -> Attempt {
        if matches!(self.state, State::Idle) {
            self.state = State::Creating;
        }
        self.attempt.clone()
    }

    /// The streams and the PipeWire remote, once streaming.
    pub fn into_streaming(self) -> Option<(Vec<StreamInfo>, F)> {
        match self.state {
            State::Streaming { streams, fd } => Some((streams, fd)),
            _ => None,
        }
    }

    fn fail(&mut self, reason: String) -> Step {
        self.state = State::Failed(reason.clone());
        Step::Stop(HelperError::ScreenRefused(reason))
    }

    /// Start over without the token (once), or give up with `reason`.
    fn retry_without_token_or_fail(&mut self, reason: String) -> Step {
        if self.attempt.restore_token.is_some() && !self.retried_without_token {
            tracing::info!(
                "the desktop portal did not take the restore token ({reason}); asking without it"
            );
            self.retried_without_token = true;
            self.attempt.restore_token = None;
            self.state = State::Idle;
            Step::Retry { forget_token: true }
        } else {
            self.fail(reason)
        }
    }

    pub fn on(&mut self, event: Event<F>) -> Step {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, event) {
            (State::Creating, Event::Created) => {
                self.state = State::Selecting;
                Step::Continue
            }
            (State::Selecting, Event::Selected) => {
                self.state = State::Starting;
                Step::Continue
            }
            (
                State::Starting,
                Event::Started {
                    streams,
                    restore_token,
                },
            ) => {
                if streams.is_empty() {
                    return self.retry_without_token_or_fail(
                        "the desktop portal started a session without any screen".into(),
                    );
                }
                // Only a session asked to persist has a token worth keeping.
                self.new_token = restore_token.filter(|t| self.attempt.persist && !t.is_empty());
                self.state = State::Opening { streams };
                Step::Continue
            }
            (State::Opening { streams }, Event::Opened(fd)) => {
                self.state = State::Streaming { streams, fd };
                Step::Streaming {
                    save_token: self.new_token.take(),
                }
            }
            (
                State::Creating | State::Selecting | State::Starting | State::Opening { .. },
                Event::Answered(Response::Cancelled),
            ) => {
                self.state = State::Cancelled;
                Step::Stop(HelperError::ScreenRefused(CANCELLED.into()))
            }
            (State::Creating, Event::Answered(r)) => {
                self.fail(format!("the desktop portal refused a session ({r:?})"))
            }
            (State::Selecting | State::Starting, Event::Answered(r)) => self
                .retry_without_token_or_fail(format!(
                    "the desktop portal ended the request ({r:?})"
                )),
            (State::Creating, Event::CallFailed(e)) => {
                self.fail(format!("the desktop portal: creating a session: {e}"))
            }
            (State::Selecting, Event::CallFailed(e)) => {
                if e.invalid_argument
                    && self.attempt.persist
                    && !self.retried_without_persist
                    // A token may be what the portal calls invalid: drop that first.
                    && (self.attempt.restore_token.is_none() || self.retried_without_token)
                {
                    tracing::warn!(
                        "the desktop portal refuses to remember the permission ({e}); \
                         it will ask the user every time"
                    );
                    self.retried_without_persist = true;
                    self.attempt.persist = false;
                    self.attempt.restore_token = None;
                    self.state = State::Idle;
                    return Step::Retry {
                        forget_token: false,
                    };
                }
                self.retry_without_token_or_fail(format!("the desktop portal: selecting: {e}"))
            }
            (State::Starting, Event::CallFailed(e)) => {
                self.retry_without_token_or_fail(format!("the desktop portal: starting: {e}"))
            }
            (State::Opening { .. }, Event::CallFailed(e)) => self.fail(format!(
                "the desktop portal: opening the PipeWire remote: {e}"
            )),
            (state, event) => {
                let reason = format!(
                    "internal: event {} in state {}",
                    event_name(&event),
                    state.name()
                );
                self.fail(reason)
            }
        }
    }
}

fn event_name<F>(e: &Event<F>) -> &'static str {
    match e {
        Event::Created => "created",
        Event::Selected => "selected",
        Event::Started { .. } => "started",
        Event::Opened(_) => "opened",
        Event::Answered(_) => "answered",
        Event::CallFailed(_) => "call failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(node: u32, x: i32, w: i32) -> StreamInfo {
        StreamInfo::new(node, Some((x, 0)), Some((w, 720)))
    }

    fn started(streams: Vec<StreamInfo>, token: Option<&str>) -> Event<()> {
        Event::Started {
            streams,
            restore_token: token.map(String::from),
        }
    }

    fn failed(invalid_argument: bool) -> Event<()> {
        Event::CallFailed(CallError {
            invalid_argument,
            message: "boom".into(),
        })
    }

    /// Runs to Starting with `m`'s current attempt.
    fn to_starting(m: &mut Machine<()>) -> Attempt {
        let a = m.begin();
        assert!(matches!(m.state(), State::Creating));
        assert_eq!(m.on(Event::Created), Step::Continue);
        assert!(matches!(m.state(), State::Selecting));
        assert_eq!(m.on(Event::Selected), Step::Continue);
        assert!(matches!(m.state(), State::Starting));
        a
    }

    #[test]
    fn the_happy_path_streams_and_keeps_the_new_token() {
        let mut m = Machine::new(Some("old".into()));
        let a = to_starting(&mut m);
        assert_eq!(
            a,
            Attempt {
                restore_token: Some("old".into()),
                persist: true
            }
        );
        let streams = vec![stream(40, 0, 1280), stream(42, 1280, 1024)];
        assert_eq!(m.on(started(streams.clone(), Some("new"))), Step::Continue);
        assert!(matches!(m.state(), State::Opening { .. }));
        assert_eq!(
            m.on(Event::Opened(())),
            Step::Streaming {
                save_token: Some("new".into())
            }
        );
        let (s, ()) = m.into_streaming().unwrap();
        assert_eq!(s, streams);
    }

    #[test]
    fn no_token_no_save() {
        let mut m = Machine::new(None);
        to_starting(&mut m);
        m.on(started(vec![stream(1, 0, 800)], None));
        assert_eq!(
            m.on(Event::Opened(())),
            Step::Streaming { save_token: None }
        );
    }

    #[test]
    fn cancel_is_a_refusal_and_never_retried() {
        for stage in 0..3 {
            let mut m = Machine::<()>::new(Some("t".into()));
            m.begin();
            if stage >= 1 {
                m.on(Event::Created);
            }
            if stage >= 2 {
                m.on(Event::Selected);
            }
            assert_eq!(
                m.on(Event::Answered(Response::from_code(1))),
                Step::Stop(HelperError::ScreenRefused(CANCELLED.into())),
                "stage {stage}"
            );
            assert!(matches!(m.state(), State::Cancelled));
        }
        assert!(CANCELLED.starts_with("the desktop's sharing dialog was cancelled"));
    }

    #[test]
    fn a_rejected_token_is_forgotten_and_the_flow_retried_once() {
        // Started without streams while a token was used.
        let mut m = Machine::new(Some("stale".into()));
        to_starting(&mut m);
        assert_eq!(
            m.on(started(vec![], None)),
            Step::Retry { forget_token: true }
        );
        assert!(matches!(m.state(), State::Idle));
        let a = to_starting(&mut m);
        assert_eq!(a.restore_token, None, "second run without the token");
        assert!(a.persist);
        // No second retry.
        assert!(matches!(m.on(started(vec![], None)), Step::Stop(_)));
        assert!(matches!(m.state(), State::Failed(_)));

        // Start answered "other" (2).
        let mut m = Machine::new(Some("stale".into()));
        to_starting(&mut m);
        assert_eq!(
            m.on(Event::Answered(Response::from_code(2))),
            Step::Retry { forget_token: true }
        );
        // Start failing as a call.
        let mut m = Machine::new(Some("stale".into()));
        to_starting(&mut m);
        assert_eq!(m.on(failed(false)), Step::Retry { forget_token: true });
        // Selecting failing with the token.
        let mut m = Machine::new(Some("stale".into()));
        m.begin();
        m.on(Event::Created);
        assert_eq!(m.on(failed(true)), Step::Retry { forget_token: true });
    }

    #[test]
    fn without_a_token_failures_stop() {
        let mut m = Machine::new(None);
        to_starting(&mut m);
        match m.on(started(vec![], None)) {
            Step::Stop(HelperError::ScreenRefused(r)) => assert!(r.contains("without any screen")),
            s => panic!("{s:?}"),
        }
        let mut m = Machine::new(None);
        to_starting(&mut m);
        assert!(matches!(
            m.on(Event::Answered(Response::Other)),
            Step::Stop(HelperError::ScreenRefused(_))
        ));
        let mut m = Machine::<()>::new(Some("t".into()));
        m.begin();
        assert!(
            matches!(m.on(failed(false)), Step::Stop(_)),
            "creating a session does not involve the token: no retry"
        );
    }

    #[test]
    fn a_portal_refusing_persistence_is_asked_again_without_it() {
        let mut m = Machine::new(None);
        m.begin();
        m.on(Event::Created);
        assert_eq!(
            m.on(failed(true)),
            Step::Retry {
                forget_token: false
            }
        );
        let a = to_starting(&mut m);
        assert_eq!(
            a,
            Attempt {
                restore_token: None,
                persist: false
            }
        );
        m.on(started(vec![stream(3, 0, 640)], Some("ignored")));
        assert_eq!(
            m.on(Event::Opened(())),
            Step::Streaming { save_token: None },
            "a non-persistent session's token is not kept"
        );

        // With a token: first without the token, then without persistence, then stop.
        let mut m = Machine::new(Some("t".into()));
        m.begin();
        m.on(Event::Created);
        assert_eq!(m.on(failed(true)), Step::Retry { forget_token: true });
        m.begin();
        m.on(Event::Created);
        assert_eq!(
            m.on(failed(true)),
            Step::Retry {
                forget_token: false
            }
        );
        m.begin();
        m.on(Event::Created);
        assert!(matches!(m.on(failed(true)), Step::Stop(_)));
    }

    #[test]
    fn failures_after_start_are_not_retried() {
        let mut m = Machine::new(Some("t".into()));
        to_starting(&mut m);
        m.on(started(vec![stream(1, 0, 10)], Some("n")));
        assert!(matches!(m.on(failed(false)), Step::Stop(_)));
        assert!(matches!(m.state(), State::Failed(_)));
    }

    #[test]
    fn out_of_order_events_fail_without_panicking() {
        let mut m = Machine::<()>::new(None);
        assert!(matches!(m.on(Event::Selected), Step::Stop(_)), "not begun");
        let mut m = Machine::<()>::new(None);
        m.begin();
        assert!(matches!(m.on(Event::Opened(())), Step::Stop(_)));
        assert!(m.into_streaming().is_none());
    }

    #[test]
    fn response_codes() {
        assert_eq!(Response::from_code(0), Response::Success);
        assert_eq!(Response::from_code(1), Response::Cancelled);
        assert_eq!(Response::from_code(2), Response::Other);
        assert_eq!(Response::from_code(77), Response::Other);
    }

    #[test]
    fn displays_are_the_streams_in_order() {
        let s = [
            StreamInfo::new(40, Some((0, 0)), Some((1280, 720))),
            StreamInfo::new(42, Some((1280, 0)), Some((1024, 768))),
            StreamInfo::new(44, None, Some((-5, 10))),
        ];
        assert_eq!(s[2].size, (0, 10), "negative sides are unknown");
        assert_eq!(s[2].position, (0, 0));
        let d = displays(&s);
        assert_eq!(
            d,
            vec![
                DisplayInfo {
                    index: 0,
                    width: 1280,
                    height: 720,
                    primary: true
                },
                DisplayInfo {
                    index: 1,
                    width: 1024,
                    height: 768,
                    primary: false
                },
                DisplayInfo {
                    index: 2,
                    width: 0,
                    height: 10,
                    primary: false
                },
            ]
        );
    }
}
