//! What a hostile agent says reaches the technician's terminal cleaned: its refusals, `Error`
//! and `Bye` texts carry escape sequences, bells, carriage returns, CSI and bidi overrides, and
//! the `tether` command prints none of them (review finding 5).

use tether_tests::hostile::{HostileAgent, Script};
use tether_tests::{Agent, Relay, Tech};

/// Clears the screen, retitles the window, overwrites the line and reverses the text.
const EVIL: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\rfake-prompt$ \u{9b}31m\u{202e}txt.exe";

/// Byte sequences a terminal obeys: ESC, BEL, CR, CSI (U+009B as UTF-8 and as the 8-bit byte)
/// and RLO (U+202E).
fn obeyed(bytes: &[u8]) -> Vec<&'static str> {
    let mut found = Vec::new();
    for (name, seq) in [
        ("ESC", &b"\x1b"[..]),
        ("BEL", b"\x07"),
        ("CR", b"\r"),
        ("CSI", "\u{9b}".as_bytes()),
        ("RLO", "\u{202e}".as_bytes()),
    ] {
        if bytes.windows(seq.len()).any(|w| w == seq) {
            found.push(name);
        }
    }
    if bytes.contains(&0x9b) && !found.contains(&"CSI") {
        found.push("CSI (8-bit)");
    }
    found
}

/// Reproduces finding 5: an agent's `Bye`/`Error` text reached the technician's terminal raw
/// (before the fix `tether exec` printed the `Bye` reason and `tether screenshot` the `Error`
/// message byte for byte).
#[test]
fn an_agents_texts_reach_the_technicians_terminal_cleaned() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let scripts = [
        ("refuses", Script::Refuse(EVIL.into())),
        ("errs instead of ready", Script::ErrorFirst(EVIL.into())),
        ("errs on the request", Script::ErrorOnRequest(EVIL.into())),
        ("says bye on the request", Script::ByeOnRequest(EVIL.into())),
    ];
    for (what, script) in scripts {
        let device = Agent::enroll(&relay.agent_token());
        let _hostile = HostileAgent::start(&device.state(), "hostile", script);
        ana.wait_online(&device.id);
        let id = device.id.as_str();
        let png = tempfile::NamedTempFile::new().unwrap();
        let png = png.path().to_str().unwrap();
        for args in [
            vec!["exec", id, "--", "true"],
            vec!["exec", id, "--json", "--", "true"],
            vec!["screenshot", id, "-o", png],
            vec!["clipboard", id],
            vec!["type", id, "x"],
        ] {
            let out = ana.tether(&args);
            let mut all = out.stdout.clone();
            all.extend_from_slice(&out.stderr);
            let text = String::from_utf8_lossy(&all);
            assert!(!out.status.success(), "{what}, {args:?}: {text}");
            // The agent's words arrived (so this path was exercised), without what obeys.
            assert!(text.contains("fake-prompt$"), "{what}, {args:?}: {text}");
            assert_eq!(
                obeyed(&all),
                Vec::<&str>::new(),
                "{what}, {args:?}: {text:?}"
            );
        }
    }
}
