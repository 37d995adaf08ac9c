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
    // Damage must cover every changed pixel: type a character between captures and compare.
    let Capture::Frame(mut prev) = b.capture(0).and_then(|_| {
        b.stop_capture();
        b.capture(0)
    })?
    else {
        return Err("no full frame".into());
    };
    let (mut frames, mut changed, mut outside, mut rects) = (0, 0usize, 0usize, 0usize);
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed() < Duration::from_secs(2) {
        if n < 12 {
            b.input(&InputEvent::Text(if n.is_multiple_of(2) {
                "x".into()
            } else {
                "\u{8}".into()
            }))?;
            n += 1;
        }
        if let Capture::Frame(f) = b.capture(0)? {
            let d = f
                .damage
                .clone()
                .ok_or("damage unknown after the first frame")?;
            frames += 1;
            rects += d.len();
            for (i, (a, c)) in f
                .pixels
                .chunks_exact(4)
                .zip(prev.pixels.chunks_exact(4))
                .enumerate()
            {
                if a[..3] != c[..3] {
                    changed += 1;
                    let (x, y) = ((i % f.width as usize) as u32, (i / f.width as usize) as u32);
                    if !d
                        .iter()
                        .any(|r| x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h)
                    {
                        outside += 1;
                    }
                }
            }
            prev = f;
        }
    }
    println!(
        "damage check: {frames} frames, {rects} rects, {changed} changed pixels, {outside} outside the damage"
    );
    // Ctrl+A (select all in the entry) then "ok" replaces the text.
    for (ks, down) in [
        (sym::CONTROL_L, true),
        (0x61, true),
        (0x61, false),
        (sym::CONTROL_L, false),
    ] {
        b.input(&key(ks, 0, down, KeyMode::Translate))?;
    }
    b.input(&InputEvent::Text("ok".into()))?;
    // A held key is released by ReleaseKeys.
    b.input(&key(sym::SHIFT_L, 0, true, KeyMode::Translate))?;
    b.input(&InputEvent::ReleaseKeys)?;
    b.input(&InputEvent::Text("!".into()))?;
    // Clipboard: ours reads back; the app pastes it (Ctrl+V); the app's copy (Ctrl+A, Ctrl+C)
    // reads back.
    b.set_clipboard("from tether ✓".into())?;
    println!("clipboard (ours): {:?}", b.get_clipboard());
    let combo = |b: &mut Wlr, letter: u32| -> Result<(), Box<dyn std::error::Error>> {
        for (ks, down) in [
            (sym::CONTROL_L, true),
            (letter, true),
            (letter, false),
            (sym::CONTROL_L, false),
        ] {
            b.input(&key(ks, 0, down, KeyMode::Translate))?;
        }
        Ok(())
    };
    combo(&mut b, 0x61)?;
    combo(&mut b, 0x76)?;
    // The paste request is answered while the connection is dispatched (here: captures).
    for _ in 0..10 {
        b.capture(0)?;
    }
    b.input(&InputEvent::Text(" pasted".into()))?;
    combo(&mut b, 0x61)?;
    combo(&mut b, 0x63)?;
    for _ in 0..4 {
        b.capture(0)?;
    }
    println!("clipboard (app's): {:?}", b.get_clipboard());
    println!("oversized: {:?}", b.set_clipboard("x".repeat(200_000)));
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
