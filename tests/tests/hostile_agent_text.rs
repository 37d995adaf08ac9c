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

/// A command's output is what the technician asked for: byte-exact into a pipe (like
/// `ssh host cmd > file`), but on a terminal only text, newlines and tabs, so a device cannot
/// drive the technician's terminal through it either.
#[test]
fn exec_output_is_exact_into_a_pipe_and_filtered_on_a_terminal() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();
    let format = r"a\033]0;owned\007b\rc\302\233d\342\200\256e\n";
    let raw = b"a\x1b]0;owned\x07b\rc\xc2\x9bd\xe2\x80\xaee\n";

    let out = ana.tether(&["exec", &agent.id, "--", "printf", format]);
    assert!(out.status.success(), "{}", tether_tests::stderr(&out));
    assert_eq!(out.stdout, raw, "not byte-exact into a pipe");

    // The same through a terminal (`script` gives `tether` a pseudo-terminal).
    let line = format!(
        "'{}' --config '{}' exec {} -- printf '{format}'",
        tether_tests::bin("tether").display(),
        ana.config().display(),
        agent.id
    );
    let out =
        tether_tests::run(std::process::Command::new("script").args(["-qec", &line, "/dev/null"]));
    assert!(out.status.success(), "{}", tether_tests::stderr(&out));
    // The terminal itself turns "\n" into "\r\n"; nothing else may obey (a lone CR either).
    let shown = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(
        shown,
        "a]0;ownedbcde\n",
        "on a terminal: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}
