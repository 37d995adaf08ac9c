//! What became of a session request: the one vocabulary the relay's store, its audit rows, the
//! report and the `tether` command's output share. Rows carry it as its text form
//! ([`Decision::as_str`]) so that stored history and older peers read it as before; every side
//! parses it back with [`Decision::parse`].

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Asked, not yet decided.
    Pending,
    /// The user approved it (or an engagement they approved covered it).
    Approved,
    /// Started without asking: an admin, on a group whose policy allows it.
    Unattended,
    /// Refused: by the user, the role, the group's policy.
    Denied,
    /// Nobody answered in time.
    TimedOut,
    /// It could not happen: device offline, no answer, the relay's store unavailable.
    Failed,
    /// A message shown to the user (`tether say`), not a session.
    Message,
}

impl Decision {
    pub const ALL: [Decision; 7] = [
        Decision::Pending,
        Decision::Approved,
        Decision::Unattended,
        Decision::Denied,
        Decision::TimedOut,
        Decision::Failed,
        Decision::Message,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pending => "pending",
            Decision::Approved => "approved",
            Decision::Unattended => "unattended",
            Decision::Denied => "denied",
            Decision::TimedOut => "timed_out",
            Decision::Failed => "failed",
            Decision::Message => "message",
        }
    }

    /// The decision a row's text names; `None` for anything else (a newer peer's word).
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The session went ahead.
    pub fn started(self) -> bool {
        matches!(self, Decision::Approved | Decision::Unattended)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_reads_back_from_its_text() {
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(Decision::parse("Approved"), None);
        assert_eq!(Decision::parse(""), None);
        assert!(Decision::Unattended.started() && !Decision::Denied.started());
    }
}
