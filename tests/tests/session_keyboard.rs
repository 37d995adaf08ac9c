//! The keyboard through the real viewer window: keys are typed with `xdotool` into the viewer
//! (`tether connect`) on the technician's Xvfb display, and a key-logging probe window (`xev`)
//! on the agent's display records every KeyPress/KeyRelease with its keysym and modifier state.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tether_tests::{Agent, Approver, Proc, Relay, Tech, Xvfb, wait_until};

const SHIFT_L: u32 = 0xffe1;
const CONTROL_L: u32 = 0xffe3;
const ALT_L: u32 = 0xffe9;
const CAPS_LOCK: u32 = 0xffe5;
const F1: u32 = 0xffbe;

#[derive(Debug, Clone, Copy, PartialEq)]
struct KeyEv {
    press: bool,
    keysym: u32,
    state: u32,
}

fn is_modifier(keysym: u32) -> bool {
    (0xffe1..=0xffee).contains(&keysym) || (0xfe01..=0xfe13).contains(&keysym)
}

/// `xev` on a display, its window focused, its events parsed from its output.
struct Probe {
    _proc: Proc,
    log: PathBuf,
    /// Bytes of the log already seen ([`Probe::clear`]).
    mark: std::cell::Cell<usize>,
}

impl Probe {
    fn start(x: &Xvfb, dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("xev")
            .args([
                "-event",
                "keyboard",
                "-geometry",
                "300x200+0+0",
                "-name",
                name,
            ])
            .env("DISPLAY", &x.display)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("xev (x11-utils) is not installed");
        focus(x, &window(x, name));
        Probe {
            _proc: Proc { child },
            log,
            mark: std::cell::Cell::new(0),
        }
    }

    fn events(&self) -> Vec<KeyEv> {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(self.mark.get()..).unwrap_or_default());
        let mut out = vec![];
        for block in text.split("\n\n") {
            let block = block.trim_start();
            let press = block.starts_with("KeyPress event");
            if !press && !block.starts_with("KeyRelease event") {
                continue;
            }
            let field = |key: &str| -> Option<u32> {
                let at = block.find(key)? + key.len();
                let hex: String = block[at..]
                    .trim_start_matches("0x")
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect();
                u32::from_str_radix(&hex, 16).ok()
            };
            if let (Some(keysym), Some(state)) = (field("(keysym 0x"), field("state 0x")) {
                out.push(KeyEv {
                    press,
                    keysym,
                    state,
                });
            }
        }
        out
    }

    /// Waits until `n` presses of non-modifier keys have arrived, then returns all events.
    fn wait_presses(&self, n: usize, what: &str) -> Vec<KeyEv> {
        let mut last = vec![];
        let got = wait_until(Duration::from_secs(60), || {
            last = self.events();
            presses(&last).len() >= n
        });
        assert!(
            got.is_some(),
            "{what}: only {} of {n} key presses arrived: {:?}",
            presses(&last).len(),
            presses(&last)
        );
        last
    }

    /// Forgets what was seen so far (xev keeps writing at its offset, so the log is not
    /// truncated: what came before the mark is skipped).
    fn clear(&self) {
        let len = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        self.mark.set(len);
    }
}

fn presses(evs: &[KeyEv]) -> Vec<KeyEv> {
    evs.iter()
        .filter(|e| e.press && !is_modifier(e.keysym))
        .copied()
        .collect()
}

/// Gives `win` the keyboard focus on `x`, once it is mapped (until then xdotool fails).
fn focus(x: &Xvfb, win: &str) {
    wait_until(Duration::from_secs(60), || {
        x.run("xdotool", &["windowfocus", "--sync", win])
            .status
            .success()
    })
    .unwrap_or_else(|| panic!("window {win} never took the focus"));
}

/// The first visible window named `name` on `x`, waiting for it to appear.
fn window(x: &Xvfb, name: &str) -> String {
    let mut found = String::new();
    wait_until(Duration::from_secs(60), || {
        found = first_line(
            &x.run("xdotool", &["search", "--onlyvisible", "--name", name])
                .stdout,
        );
        !found.is_empty()
    })
    .unwrap_or_else(|| panic!("no window named {name:?} appeared"));
    found
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A technician's display with the viewer connected to an agent on another display.
/// Fields drop in order: the viewer goes before the X servers it draws on.
struct Desk {
    viewer: Proc,
    agent: Agent,
    _user: Approver,
    tech: Tech,
    _relay: Relay,
    local: Xvfb,
    remote: Xvfb,
    win: String,
    dir: tempfile::TempDir,
}

impl Desk {
    fn start(keys: &str) -> Self {
        let remote = Xvfb::start(640, 400);
        let local = Xvfb::start(900, 600);
        let dir = tempfile::tempdir().unwrap();
        let relay = Relay::start();
        let tech = Tech::enroll(&relay.tech_token("ana", "support"));
        let mut agent = Agent::enroll(&relay.agent_token());
        agent.start_on_display(&remote.display);
        tech.wait_online(&agent.id);
        let user = agent.auto_approve();
        let mut desk = Desk {
            viewer: Self::viewer(&tech, &local, &agent.id, keys),
            win: String::new(),
            local,
            remote,
            _relay: relay,
            tech,
            agent,
            _user: user,
            dir,
        };
        desk.win = desk.wait_window();
        desk
    }

    fn viewer(tech: &Tech, local: &Xvfb, device: &str, keys: &str) -> Proc {
        tech.viewer(
            local,
            device,
            &["--keys", keys, "--reason", "keyboard test"],
            &[],
        )
    }

    /// Waits for the viewer window (it opens once the session runs).
    fn wait_window(&self) -> String {
        let win = window(&self.local, "Tether: ");
        self.focus_viewer(&win);
        win
    }

    fn focus_viewer(&self, win: &str) {
        // Keep the local pointer off the remote picture: only the keyboard is under test.
        assert!(
            self.local
                .run("xdotool", &["mousemove", "0", "0"])
                .status
                .success()
        );
        focus(&self.local, win);
    }

    /// `xdotool ARGS` on the technician's display (into the focused viewer).
    fn keys(&self, args: &[&str]) {
        let out = self.local.run("xdotool", args);
        assert!(out.status.success(), "xdotool {args:?}: {out:?}");
    }

    /// Keys held down on the agent's display by XTEST (the agent's input).
    fn remote_keys_down(&self) -> Vec<String> {
        let out = self
            .remote
            .run("xinput", &["query-state", "Virtual core XTEST keyboard"]);
        assert!(out.status.success(), "xinput: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|w| w.ends_with("=down"))
            .map(str::to_string)
            .collect()
    }
}

/// Every printable ASCII character, shifted and unshifted, Caps Lock, F1–F24, Insert, Print,
/// Menu, the numpad, Ctrl, Alt and
/// Shift combinations, a held key, and no key left down after the viewer loses focus or goes.
#[test]
fn every_key_typed_into_the_viewer_reaches_the_remote_as_typed() {
    let desk = Desk::start("translate");
    let probe = Probe::start(&desk.remote, desk.dir.path(), "keyprobe");
    desk.focus_viewer(&desk.win);

    // All 95 printable ASCII characters, in order.
    let ascii: String = (' '..='~').collect();
    desk.keys(&["type", "--delay", "15", &ascii]);
    let evs = probe.wait_presses(95, "printable ASCII");
    let typed: String = presses(&evs)
        .iter()
        .map(|e| char::from_u32(e.keysym).unwrap_or('\u{fffd}'))
        .collect();
    assert_eq!(typed, ascii);
    // Shifted characters arrived with Shift down, unshifted ones without.
    for e in presses(&evs) {
        let c = char::from_u32(e.keysym).unwrap_or(' ');
        let shifted = c.is_ascii_uppercase() || "~!@#$%^&*()_+{}|:\"<>?".contains(c);
        assert_eq!(e.state & 1 != 0, shifted, "{c:?} state {:#x}", e.state);
    }
    let releases = |evs: &[KeyEv]| {
        evs.iter()
            .filter(|e| !e.press && !is_modifier(e.keysym))
            .count()
    };
    wait_until(Duration::from_secs(30), || releases(&probe.events()) == 95)
        .unwrap_or_else(|| panic!("{} of 95 keys went up again", releases(&probe.events())));

    // Caps Lock: letters arrive in capitals, without Shift.
    probe.clear();
    desk.keys(&[
        "key",
        "--delay",
        "30",
        "Caps_Lock",
        "a",
        "b",
        "c",
        "Caps_Lock",
    ]);
    let evs = probe.wait_presses(3, "Caps Lock");
    assert!(evs.iter().any(|e| e.press && e.keysym == CAPS_LOCK));
    let letters: Vec<u32> = presses(&evs).iter().map(|e| e.keysym).collect();
    assert_eq!(letters, vec![0x41, 0x42, 0x43], "{evs:?}");
    assert!(presses(&evs).iter().all(|e| e.state & 1 == 0));

    // F1–F12.
    probe.clear();
    let fkeys: Vec<String> = (1..=12).map(|n| format!("F{n}")).collect();
    let mut args = vec!["key", "--delay", "30"];
    args.extend(fkeys.iter().map(String::as_str));
    desk.keys(&args);
    let evs = probe.wait_presses(12, "F1-F12");
    let got: Vec<u32> = presses(&evs).iter().map(|e| e.keysym).collect();
    assert_eq!(got, (0..12).map(|i| F1 + i).collect::<Vec<_>>());

    // F13–F24, Insert, Print, Menu and the numpad (egui does not tell numpad keys from the
    // others: they arrive as the character, or as the keypad keysym).
    probe.clear();
    // F13-F24 on keys of the technician's keyboard, as a keyboard that has them: xdotool would
    // otherwise map each to a scratch keycode and take the mapping back at once, racing the
    // viewer's lookup of the key.
    let more: Vec<String> = (13..=24).map(|n| format!("F{n}")).collect();
    for (i, key) in more.iter().enumerate() {
        let map = format!("keycode {} = {key}", 191 + i);
        assert!(desk.local.run("xmodmap", &["-e", &map]).status.success());
    }
    let extra = [
        "Insert",
        "Print",
        "Menu",
        "KP_Multiply",
        "KP_Add",
        "KP_Enter",
    ];
    for key in more.iter().map(String::as_str).chain(extra) {
        desk.keys(&["key", key]);
    }
    let evs = probe.wait_presses(18, "F13-F24, Insert, Print, Menu, numpad");
    let got: Vec<u32> = presses(&evs).iter().map(|e| e.keysym).collect();
    let mut want: Vec<Vec<u32>> = (0..12).map(|i| vec![F1 + 12 + i]).collect();
    want.extend([
        vec![0xff63],
        vec![0xff61],
        vec![0xff67],
        vec![0x2a, 0xffaa],
        vec![0x2b, 0xffab],
        vec![0xff0d, 0xff8d],
    ]);
    assert_eq!(got.len(), want.len(), "{evs:?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(w.contains(g), "{g:#x} is not one of {w:x?}: {evs:?}");
    }

    // Ctrl+C, Ctrl+Shift+T, Alt+F4: the keys with their modifiers down.
    probe.clear();
    desk.keys(&["key", "--delay", "30", "ctrl+c", "ctrl+shift+t", "alt+F4"]);
    let evs = probe.wait_presses(3, "combinations");
    let got: Vec<(u32, u32)> = presses(&evs)
        .iter()
        .map(|e| (e.keysym, e.state & 0xd))
        .collect();
    assert_eq!(
        got,
        vec![(0x63, 0x4), (0x54, 0x5), (F1 + 3, 0x8)],
        "{evs:?}"
    );
    // …and each modifier goes up again.
    wait_until(Duration::from_secs(30), || {
        let evs = probe.events();
        [CONTROL_L, SHIFT_L, ALT_L]
            .iter()
            .all(|&m| evs.iter().any(|e| !e.press && e.keysym == m))
    })
    .unwrap_or_else(|| panic!("a modifier stayed down: {:?}", probe.events()));

    // A key held for a second repeats on the remote, then goes up.
    probe.clear();
    desk.keys(&["keydown", "x"]);
    // Holding the key is the behaviour under test, not a wait for an event.
    std::thread::sleep(Duration::from_millis(1200));
    desk.keys(&["keyup", "x"]);
    let evs = probe.wait_presses(1, "held key");
    wait_until(Duration::from_secs(30), || {
        probe.events().iter().any(|e| !e.press && e.keysym == 0x78)
    })
    .expect("the held key never went up");
    let repeats = presses(&probe.events())
        .iter()
        .filter(|e| e.keysym == 0x78)
        .count();
    assert!(
        repeats >= 3,
        "a key held for 1 s repeated {repeats} times: {evs:?}"
    );

    // Focus lost while Shift is held: the remote Shift goes up.
    probe.clear();
    desk.keys(&["keydown", "shift"]);
    wait_until(Duration::from_secs(30), || {
        probe
            .events()
            .iter()
            .any(|e| e.press && e.keysym == SHIFT_L)
    })
    .expect("Shift never reached the remote");
    let _other = desk.local.spawn("xterm", &["-T", "other-window"]);
    focus(&desk.local, &window(&desk.local, "other-window"));
    wait_until(Duration::from_secs(30), || {
        probe
            .events()
            .iter()
            .any(|e| !e.press && e.keysym == SHIFT_L)
    })
    .expect("Shift stayed down on the remote after the viewer lost focus");
    desk.keys(&["keyup", "shift"]);
    assert_eq!(desk.remote_keys_down(), Vec::<String>::new());

    // Ctrl held when the viewer goes away: nothing stays down on the remote.
    desk.focus_viewer(&desk.win);
    probe.clear();
    desk.keys(&["keydown", "ctrl"]);
    wait_until(Duration::from_secs(30), || {
        probe
            .events()
            .iter()
            .any(|e| e.press && e.keysym == CONTROL_L)
    })
    .expect("Ctrl never reached the remote");
    let mut desk = desk;
    let _ = desk.viewer.child.kill();
    let _ = desk.viewer.child.wait();
    wait_until(Duration::from_secs(30), || {
        desk.remote_keys_down().is_empty()
    })
    .unwrap_or_else(|| panic!("keys left down: {:?}", desk.remote_keys_down()));
    desk.keys(&["keyup", "ctrl"]);
}

/// A sentence with capitals, digits and every ASCII symbol typed through the viewer into a
/// remote `cat > FILE` arrives byte for byte; Ctrl+D ends the `cat`, Ctrl+C a `sleep 100`.
#[test]
fn typing_through_the_viewer_gives_the_exact_bytes_and_ctrl_c_interrupts() {
    let desk = Desk::start("translate");
    let typed = desk.dir.path().join("typed.txt");
    let started = desk.dir.path().join("sleeping");
    let mut term = desk.remote.spawn(
        "xterm",
        &[
            "-geometry",
            "60x10+0+0",
            "-T",
            "remote-term",
            "-e",
            "sh",
            "-c",
            &format!(
                "cat > {}; touch {}; sleep 100",
                typed.display(),
                started.display()
            ),
        ],
    );
    focus(&desk.remote, &window(&desk.remote, "remote-term"));
    desk.focus_viewer(&desk.win);
    let sentence = "echo Hello World: Password-123! \"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ done";
    desk.keys(&["type", "--delay", "15", sentence]);
    desk.keys(&["key", "Return", "ctrl+d"]);
    wait_until(Duration::from_secs(60), || started.exists()).unwrap_or_else(|| {
        panic!(
            "cat did not end; typed so far: {:?}",
            std::fs::read_to_string(&typed)
        )
    });
    assert_eq!(
        std::fs::read_to_string(&typed).unwrap(),
        format!("{sentence}\n")
    );
    desk.keys(&["key", "ctrl+c"]);
    wait_until(Duration::from_secs(60), || {
        term.child.try_wait().ok().flatten().is_some()
    })
    .expect("Ctrl+C through the viewer did not end the remote sleep");
}

/// The remote keyboard is German, the technician's US: translate mode types what the
/// technician meant (`y z @ [ ]`), physical mode what the German keys at those places type.
#[test]
fn translate_and_physical_modes_on_a_german_remote_layout() {
    let desk = Desk::start("translate");
    assert!(
        desk.remote.run("setxkbmap", &["de"]).status.success(),
        "setxkbmap (x11-xkb-utils) is needed"
    );
    let probe = Probe::start(&desk.remote, desk.dir.path(), "keyprobe-de");
    desk.focus_viewer(&desk.win);
    desk.keys(&["type", "--delay", "30", "yz@[]Y"]);
    let evs = probe.wait_presses(6, "translate mode");
    let got: Vec<u32> = presses(&evs).iter().map(|e| e.keysym).collect();
    assert_eq!(got, vec![0x79, 0x7a, 0x40, 0x5b, 0x5d, 0x59], "{evs:?}");

    // The same keys in physical mode: the German layout decides.
    // Every key of the translate part is up again on the remote before its viewer goes.
    wait_until(Duration::from_secs(30), || {
        desk.remote_keys_down().is_empty()
    })
    .unwrap_or_else(|| panic!("keys left down: {:?}", desk.remote_keys_down()));
    let mut desk = desk;
    let _ = desk.viewer.child.kill();
    let _ = desk.viewer.child.wait();
    wait_until(Duration::from_secs(60), || {
        !desk
            .local
            .run(
                "xdotool",
                &["search", "--onlyvisible", "--name", "Tether: "],
            )
            .status
            .success()
    })
    .expect("the first viewer's window stayed");
    desk.viewer = Desk::viewer(&desk.tech, &desk.local, &desk.agent.id, "physical");
    let win = desk.wait_window();
    focus(&desk.remote, &window(&desk.remote, "keyprobe-de"));
    desk.focus_viewer(&win);
    probe.clear();
    desk.keys(&["type", "--delay", "30", "yz"]);
    let evs = probe.wait_presses(2, "physical mode");
    let got: Vec<u32> = presses(&evs).iter().map(|e| e.keysym).collect();
    assert_eq!(got, vec![0x7a, 0x79], "{evs:?}");
}
