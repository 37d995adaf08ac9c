//! Throwaway check of the wlroots backend against a live compositor (see the research
//! `run-sway.sh` and `testapp.py`): lists displays, checks the test pattern pixel-exact, types
//! and clicks. Run as the session's user with its `WAYLAND_DISPLAY` and `XDG_RUNTIME_DIR`.

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};
    use tether_protocol::keys::{KeyEvent, KeyMode, sym};
    use tether_protocol::session::{InputEvent, MouseButton};
    use tether_wayland::backend::{Backend, Capture};
    use tether_wayland::wlr::Wlr;

    println!("available: {}", Wlr::available());
    let mut b = Wlr::connect()?;
    println!("backend {} compositor {}", b.name(), b.compositor());
    println!("displays {:?}", b.displays()?);

    let t = Instant::now();
    let Capture::Frame(f) = b.capture(0)? else {
        return Err("first capture unchanged".into());
    };
    println!(
        "first frame {}x{} damage {:?} in {:?}",
        f.width,
        f.height,
        f.damage,
        t.elapsed()
    );
    // testapp.py: rows 0..200, bands of 320 px: red, green, blue, white (BGRX in memory).
    let bands = [[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255]];
    let mut bad = 0usize;
    for y in 0..200usize {
        for x in 0..1280usize {
            let i = (y * f.width as usize + x) * 4;
            if f.pixels[i..i + 3] != bands[x / 320] {
                bad += 1;
            }
        }
    }
    println!("pattern: {} of {} pixels differ", bad, 200 * 1280);

    for _ in 0..3 {
        let t = Instant::now();
        match b.capture(0)? {
            Capture::Unchanged => println!("capture: unchanged in {:?}", t.elapsed()),
            Capture::Frame(f) => {
                println!("capture: frame damage {:?} in {:?}", f.damage, t.elapsed())
            }
        }
    }

    let key = |keysym, code, down, mode| {
        InputEvent::KeyEvent(KeyEvent {
            keysym,
            code,
            down,
            mode,
        })
    };
    b.input(&InputEvent::Text("Hello, World! @#".into()))?;
    // A named key in translate mode, then '#' in physical mode (Shift + KEY_3).
    b.input(&key(sym::BACKSPACE, 0, true, KeyMode::Translate))?;
    b.input(&key(sym::BACKSPACE, 0, false, KeyMode::Translate))?;
    for (code, down) in [(42, true), (4, true), (4, false), (42, false)] {
        b.input(&key(0, code, down, KeyMode::Physical))?;
    }
    println!("typed");
    println!("untypable: {:?}", b.input(&InputEvent::Text("é".into())));
    std::thread::sleep(Duration::from_millis(200));
    b.input(&InputEvent::Click {
        x: 640,
        y: 500,
        button: MouseButton::Left,
    })?;
    b.input(&InputEvent::Click {
        x: 100,
        y: 600,
        button: MouseButton::Right,
    })?;
    println!("clicked");
    b.input(&InputEvent::Scroll { dx: 0, dy: 1 })?;

    let t = Instant::now();
    loop {
        match b.capture(0)? {
            Capture::Unchanged if t.elapsed() < Duration::from_secs(2) => {}
            Capture::Unchanged => {
                println!("no change after input");
                break;
            }
            Capture::Frame(f) => {
                println!(
                    "after input: frame damage {:?} in {:?}",
                    f.damage,
                    t.elapsed()
                );
                break;
            }
        }
    }
    b.stop_capture();
    let Capture::Frame(f) = b.capture(0)? else {
        return Err("capture after stop unchanged".into());
    };
    println!(
        "after stop_capture: full frame {}x{} damage {:?}",
        f.width, f.height, f.damage
    );
    println!("no such display: {:?}", b.capture(5));
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {}
