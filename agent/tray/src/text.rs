//! Everything the tray says to the person at the desktop, kept apart from GTK so the wording can
//! be unit-tested. All of it is plain text: callers put it in labels without markup, so names,
//! reasons and tickets typed by a technician can never turn into formatting.

use std::time::Duration;
use tether_protocol::consent::{ActiveSession, EngagementInfo, Prompt};
use tether_protocol::identity::Role;
use tether_protocol::session::Activity;
use tether_protocol::session::{MAX_MESSAGE, Permissions};

/// Status while the agent's socket cannot be reached.
pub const NOT_RUNNING: &str = "Tether agent not running";
/// Status while connected and no session runs.
pub const IDLE: &str = "Tether: idle";

/// "alice (support)".
pub fn who(technician: &str, role: Role) -> String {
    format!("{technician} ({role})")
}

/// The name and role come from the technician's certificate (via the relay-signed grant), which
/// is why the dialog may say the organisation vouches for them.
pub fn verified(technician: &str, role: Role) -> String {
    format!("{} — verified by your organisation", who(technician, role))
}

/// The headline of the consent dialog: "wants to CONTROL this computer", naming the screen
/// access first and any further powers after it ("…, RUN COMMANDS and COPY FILES").
pub fn wants(p: Permissions) -> String {
    // (in full when it comes first, short when it follows)
    let mut acts = Vec::new();
    if p.control {
        acts.push(("CONTROL this computer", "CONTROL it"));
    } else if p.view {
        acts.push(("VIEW this computer", "VIEW it"));
    }
    if p.shell {
        acts.push(("RUN COMMANDS on this computer", "RUN COMMANDS"));
    }
    if p.files {
        acts.push(("COPY FILES to and from this computer", "COPY FILES"));
    }
    let Some(((first, _), rest)) = acts.split_first() else {
        return "wants to connect to this computer".to_string();
    };
    let mut line = format!("wants to {first}");
    for (i, (_, short)) in rest.iter().enumerate() {
        line.push_str(if i + 1 == rest.len() { " and " } else { ", " });
        line.push_str(short);
    }
    if p.as_root() {
        line.push_str(AS_ROOT);
    }
    line
}

/// Appended to the headline when the technician asks to act as root: the one permission that
/// lifts every limit the desktop user has, so it is said in capitals.
const AS_ROOT: &str = " AS ROOT (administrator)";

/// The line of [`permission_lines`] for root.
pub const ROOT_LINE: &str = "Run commands and open files as root (administrator): full control of this computer, beyond your own account";

/// What a running session is doing, for the banner and the status: "is controlling this
/// computer". Names the most intrusive permission.
pub fn doing(p: Permissions) -> &'static str {
    if p.control {
        "is controlling this computer"
    } else if p.view {
        "is viewing this computer"
    } else if p.shell {
        "is running commands on this computer"
    } else if p.files {
        "is transferring files on this computer"
    } else {
        "is connected to this computer"
    }
}

/// One line per permission asked, in words a non-technical user understands.
pub fn permission_lines(p: Permissions) -> Vec<&'static str> {
    let lines: Vec<&'static str> = [
        (p.view, "See your screen"),
        (p.control, "Use your mouse and keyboard"),
        (p.clipboard, "Read and change your clipboard"),
        (p.shell, "Run commands on this computer"),
        (p.files, "Copy files to and from this computer"),
        (p.as_root(), ROOT_LINE),
    ]
    .into_iter()
    .filter_map(|(on, line)| on.then_some(line))
    .collect();
    if lines.is_empty() {
        vec!["Nothing (no permissions requested)"]
    } else {
        lines
    }
}

pub fn reason(reason: &str) -> String {
    if reason.trim().is_empty() {
        "Reason: (none given)".to_string()
    } else {
        format!("Reason: {reason}")
    }
}

pub fn ticket(ticket: &str) -> String {
    if ticket.trim().is_empty() {
        "Ticket: (none)".to_string()
    } else {
        format!("Ticket: {ticket}")
    }
}

pub fn countdown(seconds: u32) -> String {
    format!("Denied automatically in {seconds} s")
}

/// Whole seconds left (rounded up, so the dialog shows "1 s" until the very end) of a prompt that
/// had `total` seconds left when it arrived `elapsed` ago.
pub fn seconds_remaining(total: u32, elapsed: Duration) -> u32 {
    let left = Duration::from_secs(u64::from(total)).saturating_sub(elapsed);
    let whole = left.as_secs();
    let secs = if left.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    };
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// What the prompt adds below the permissions: the command or path, whose account it runs as,
/// whether the shell is recorded, and what this visit already allowed.
pub fn details(p: &Prompt) -> Vec<String> {
    let mut lines = Vec::new();
    match &p.activity {
        Activity::Command { line } => lines.push(format!("Command: {line}")),
        Activity::Push { path } => lines.push(format!("Copy files to: {path}")),
        Activity::Pull { path } => lines.push(format!("Copy from this computer: {path}")),
        Activity::Shell => lines.push("Opens a terminal (command line)".to_string()),
        _ => {}
    }
    match p.runs_as.as_deref() {
        Some("root") => lines.push("Runs as: root (administrator)".to_string()),
        Some(name) => lines.push(format!(
            "Runs as: {name}, a normal account (not administrator)"
        )),
        None => {}
    }
    if p.recorded {
        lines.push(
            "This shell is recorded: your organisation keeps everything typed and shown in it"
                .to_string(),
        );
    }
    if let Some(already) = p.already {
        lines.push(format!(
            "You already allowed {} for this ticket; this asks for more",
            already.describe()
        ));
    }
    lines
}

/// What the session is doing now: for the screen, watching or controlling; otherwise the
/// command, the copy or the terminal.
fn doing_now(s: &ActiveSession) -> String {
    match s.activity {
        Activity::Screen => doing(s.permissions).to_string(),
        ref a => a.doing(),
    }
}

/// "alice (support) is controlling this computer · ticket HD-1042 (unattended access)".
pub fn session_line(s: &ActiveSession) -> String {
    let mut line = format!("{} {}", who(&s.technician, s.role), doing_now(s));
    if !s.ticket.trim().is_empty() {
        line.push_str(" · ticket ");
        line.push_str(&s.ticket);
    }
    if s.unattended {
        line.push_str(" (unattended access)");
    }
    line
}

/// The session the banner shows (the latest started) and its text; `None` when nothing runs.
pub fn banner<'a>(
    active: &'a [ActiveSession],
    notices: &std::collections::HashMap<String, String>,
) -> Option<(&'a ActiveSession, String)> {
    let latest = active.last()?;
    let mut text = session_line(latest);
    text.push_str(&more(active.len()));
    // A dialog of the desktop's own is coming (the portal): say so under the session line.
    if let Some(n) = notices.get(&latest.id) {
        text.push('\n');
        text.push_str(&tether_protocol::text::clean(n, 300));
    }
    Some((latest, text))
}

/// The one-line status for the tray menu, tooltip and fallback window.
pub fn status(connected: bool, active: &[ActiveSession]) -> String {
    if !connected {
        return NOT_RUNNING.to_string();
    }
    match active.last() {
        None => IDLE.to_string(),
        Some(s) => format!(
            "Tether: {} {}{}",
            who(&s.technician, s.role),
            doing_now(s),
            more(active.len())
        ),
    }
}

/// Status between the sessions of an engagement: the technician may come back without asking
/// until the user ends it (or it idles out).
pub fn engaged(e: &EngagementInfo) -> String {
    let mut line = format!(
        "Tether: {} may reconnect without asking",
        who(&e.technician, e.role)
    );
    if !e.ticket.trim().is_empty() {
        line.push_str(" · ticket ");
        line.push_str(&e.ticket);
    }
    line.push_str(" — End session to stop it");
    line
}

/// Status while the agent answers but will not serve this app (e.g. another user's desktop).
pub fn refused(message: &str) -> String {
    format!("Tether agent refused this app: {message}")
}

pub fn rating_question(technician: &str) -> String {
    format!("How did {technician} do?")
}

/// Title of the window showing a technician's message: "Tether: message from ana".
pub fn message_title(technician: &str) -> String {
    format!("Tether: message from {technician}")
}

pub fn reply_countdown(seconds: u32) -> String {
    format!("Reply within {seconds} s")
}

/// What is sent back for the text typed in the reply box: surrounding blanks trimmed, control
/// characters dropped and cut (on a character boundary) to [`MAX_MESSAGE`] bytes, as the agent
/// would. Empty means "no reply".
pub fn reply(typed: &str) -> String {
    tether_protocol::text::clean(typed.trim(), MAX_MESSAGE)
        .trim()
        .to_string()
}

fn more(sessions: usize) -> String {
    if sessions > 1 {
        format!(" (+{} more)", sessions - 1)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        id: &str,
        permissions: Permissions,
        ticket: &str,
        unattended: bool,
    ) -> ActiveSession {
        ActiveSession {
            id: id.into(),
            technician: "alice".into(),
            role: Role::Support,
            reason: "printer".into(),
            ticket: ticket.into(),
            permissions,
            started_unix_ms: 0,
            unattended,
            activity: Activity::Screen,
            engagement: id.into(),
        }
    }

    #[test]
    fn wording_follows_the_permissions() {
        assert_eq!(wants(Permissions::VIEW), "wants to VIEW this computer");
        assert_eq!(
            wants(Permissions::CONTROL),
            "wants to CONTROL this computer"
        );
        assert_eq!(wants(Permissions::FULL), "wants to CONTROL this computer");
        assert_eq!(permission_lines(Permissions::VIEW), vec!["See your screen"]);
        assert_eq!(permission_lines(Permissions::FULL).len(), 3);
        assert!(permission_lines(Permissions::FULL)[2].contains("clipboard"));
        assert_eq!(doing(Permissions::VIEW), "is viewing this computer");
        assert_eq!(
            doing(Permissions::SHELL),
            "is running commands on this computer"
        );
        assert_eq!(
            wants(Permissions::SHELL),
            "wants to RUN COMMANDS on this computer"
        );
        let all = Permissions {
            shell: true,
            files: true,
            ..Permissions::FULL
        };
        assert_eq!(
            wants(all),
            "wants to CONTROL this computer, RUN COMMANDS and COPY FILES"
        );
        assert_eq!(permission_lines(all).len(), 5);
        let no_screen = Permissions {
            files: true,
            ..Permissions::SHELL
        };
        assert_eq!(
            wants(no_screen),
            "wants to RUN COMMANDS on this computer and COPY FILES"
        );
        assert_eq!(
            wants(Permissions::default()),
            "wants to connect to this computer"
        );
        let root = Permissions {
            root: true,
            ..Permissions::SHELL
        };
        assert_eq!(
            wants(root),
            "wants to RUN COMMANDS on this computer AS ROOT (administrator)"
        );
        assert_eq!(
            permission_lines(root),
            vec!["Run commands on this computer", ROOT_LINE]
        );
        // Root without shell or files does nothing, and is not shown as if it did.
        assert_eq!(
            wants(Permissions {
                root: true,
                ..Permissions::VIEW
            }),
            "wants to VIEW this computer"
        );
        assert_eq!(
            permission_lines(Permissions::default()),
            vec!["Nothing (no permissions requested)"]
        );
    }

    #[test]
    fn identity_says_where_it_comes_from() {
        assert_eq!(
            verified("alice", Role::Support),
            "alice (support) — verified by your organisation"
        );
        assert_eq!(reason(" "), "Reason: (none given)");
        assert_eq!(ticket("HD-1"), "Ticket: HD-1");
    }

    #[test]
    fn countdown_rounds_up_and_stops_at_zero() {
        assert_eq!(countdown(30), "Denied automatically in 30 s");
        assert_eq!(seconds_remaining(30, Duration::ZERO), 30);
        assert_eq!(seconds_remaining(30, Duration::from_millis(300)), 30);
        assert_eq!(seconds_remaining(30, Duration::from_secs(1)), 29);
        assert_eq!(seconds_remaining(30, Duration::from_millis(29_999)), 1);
        assert_eq!(seconds_remaining(30, Duration::from_secs(30)), 0);
        assert_eq!(seconds_remaining(30, Duration::from_secs(99)), 0);
    }

    #[test]
    fn the_banner_says_what_runs_now_and_the_prompt_what_will() {
        let mut s = session("c", Permissions::SHELL, "HD-7", false);
        s.activity = Activity::Command {
            line: "systemctl restart cups".into(),
        };
        assert_eq!(
            session_line(&s),
            "alice (support) is running: systemctl restart cups · ticket HD-7"
        );
        s.activity = Activity::Push {
            path: "/home/sam/fix.sh".into(),
        };
        assert!(session_line(&s).contains("is copying files to /home/sam/fix.sh"));
        let p = Prompt {
            id: "p".into(),
            technician: "alice".into(),
            role: Role::Support,
            reason: String::new(),
            ticket: "HD-7".into(),
            permissions: Permissions::SHELL,
            seconds_left: 30,
            activity: Activity::Command {
                line: "df -h".into(),
            },
            runs_as: Some("sam".into()),
            recorded: true,
            already: Some(Permissions::FULL),
        };
        assert_eq!(
            details(&p),
            [
                "Command: df -h",
                "Runs as: sam, a normal account (not administrator)",
                "This shell is recorded: your organisation keeps everything typed and shown in it",
                "You already allowed view + control + clipboard for this ticket; this asks for more",
            ]
        );
        let root = Prompt {
            runs_as: Some("root".into()),
            recorded: false,
            already: None,
            ..p
        };
        assert_eq!(
            details(&root),
            ["Command: df -h", "Runs as: root (administrator)"]
        );
        let e = EngagementInfo {
            id: "e".into(),
            technician: "alice".into(),
            role: Role::Support,
            ticket: "HD-7".into(),
            approved: Permissions::FULL,
            running: 0,
        };
        assert_eq!(
            engaged(&e),
            "Tether: alice (support) may reconnect without asking · ticket HD-7 — End session to stop it"
        );
    }

    #[test]
    fn status_and_banner_name_the_latest_session() {
        assert_eq!(status(false, &[]), NOT_RUNNING);
        assert_eq!(status(true, &[]), IDLE);
        let a = session("a", Permissions::FULL, "HD-1042", false);
        assert_eq!(
            status(true, std::slice::from_ref(&a)),
            "Tether: alice (support) is controlling this computer"
        );
        assert_eq!(
            session_line(&a),
            "alice (support) is controlling this computer · ticket HD-1042"
        );
        let b = session("b", Permissions::VIEW, "", true);
        assert_eq!(
            session_line(&b),
            "alice (support) is viewing this computer (unattended access)"
        );
        let both = [a, b];
        let none = std::collections::HashMap::new();
        let (shown, text) = banner(&both, &none).expect("a session runs");
        assert_eq!(shown.id, "b");
        assert!(text.ends_with("(unattended access) (+1 more)"));
        assert!(banner(&[], &none).is_none());
        // A notice for the session shown goes under its line, cleaned; another session's not.
        let notices = std::collections::HashMap::from([
            (
                "b".to_string(),
                "Your desktop may ask\u{1b}[2J which screen".to_string(),
            ),
            ("a".to_string(), "not shown".to_string()),
        ]);
        let (_, text) = banner(&both, &notices).expect("a session runs");
        assert!(
            text.ends_with("(+1 more)\nYour desktop may ask[2J which screen"),
            "{text:?}"
        );
        assert_eq!(rating_question("alice"), "How did alice do?");
    }

    #[test]
    fn message_wording_and_replies() {
        assert_eq!(message_title("ana"), "Tether: message from ana");
        assert_eq!(reply_countdown(30), "Reply within 30 s");
        assert_eq!(reply("  saved \n"), "saved");
        assert_eq!(reply("ok\u{1b}[2J go"), "ok[2J go");
        assert_eq!(reply(" \t "), "");
        // Cut to the protocol's limit in bytes, never inside a character.
        let long = "é".repeat(MAX_MESSAGE);
        let cut = reply(&long);
        assert!(cut.len() <= MAX_MESSAGE && cut.len() >= MAX_MESSAGE - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(reply(&"a".repeat(MAX_MESSAGE + 5)).len(), MAX_MESSAGE);
    }
}
