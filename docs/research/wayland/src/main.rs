//! Prototype: screen + input on a GNOME (mutter) Wayland session through mutter's own
//! ScreenCast + RemoteDesktop D-Bus APIs and PipeWire.
//!
//! usage: proto-wayland [--out DIR] [--type TEXT] [--click X,Y] [--still SECS] [--wiggle SECS]
//!                      [--no-copy] [--no-rd]
//! Env: DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR of the session (see run-mutter.sh).

mod capture;
mod mutter;

use anyhow::{Context, Result, bail};
use capture::Event;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use zbus::zvariant::Value;

struct Args {
    out: String,
    text: Option<String>,
    click: Option<(f64, f64)>,
    still: f64,
    wiggle: f64,
    copy: bool,
    rd: bool,
    cursor_mode: u32,
    connector: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        out: "/tmp/proto-wl".into(),
        text: None,
        click: None,
        still: 0.0,
        wiggle: 0.0,
        copy: true,
        rd: true,
        cursor_mode: 2,
        connector: String::new(),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--out" => { i += 1; a.out = v[i].clone() }
            "--type" => { i += 1; a.text = Some(v[i].clone()) }
            "--click" => {
                i += 1;
                let (x, y) = v[i].split_once(',').expect("--click X,Y");
                a.click = Some((x.parse().unwrap(), y.parse().unwrap()));
            }
            "--still" => { i += 1; a.still = v[i].parse().unwrap() }
            "--wiggle" => { i += 1; a.wiggle = v[i].parse().unwrap() }
            "--cursor-mode" => { i += 1; a.cursor_mode = v[i].parse().unwrap() }
            "--connector" => { i += 1; a.connector = v[i].clone() }
            "--no-copy" => a.copy = false,
            "--no-rd" => a.rd = false,
            x => panic!("unknown arg {x}"),
        }
        i += 1;
    }
    a
}

/// utime+stime of this process in ms (from /proc/self/stat; CLK_TCK = 100)
fn cpu_ms() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
    (ut + st) * 10
}

fn save_png(path: &str, f: &capture::Frame) -> Result<()> {
    let bgr = capture::is_bgr(f.format);
    let mut rgba = Vec::with_capacity(f.data.len());
    for px in f.data.chunks_exact(4) {
        if bgr {
            rgba.extend_from_slice(&[px[2], px[1], px[0], 255]);
        } else {
            rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, f.w, f.h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgba)?;
    Ok(())
}

/// pixel as (r,g,b)
fn px(f: &capture::Frame, x: u32, y: u32) -> (u8, u8, u8) {
    let i = ((y * f.w + x) * 4) as usize;
    let p = &f.data[i..i + 4];
    if capture::is_bgr(f.format) { (p[2], p[1], p[0]) } else { (p[0], p[1], p[2]) }
}

#[derive(Default, Debug)]
struct Stats {
    frames: u64,
    meta_only: u64,
    with_damage: u64,
    damage_rects: u64,
    damage_px: u64,
    full_damage: u64,
    with_cursor: u64,
    cursor_bitmaps: u64,
    last_cursor: Option<(i32, i32)>,
}

impl Stats {
    fn add(&mut self, damage: &Option<Vec<capture::Rect>>, cursor: &Option<capture::Cursor>, w: u32, h: u32) {
        if let Some(d) = damage {
            if !d.is_empty() {
                self.with_damage += 1;
            }
            self.damage_rects += d.len() as u64;
            for r in d {
                self.damage_px += r.w as u64 * r.h as u64;
                if r.w == w && r.h == h {
                    self.full_damage += 1;
                }
            }
        }
        if let Some(c) = cursor {
            self.with_cursor += 1;
            if c.bitmap.is_some() {
                self.cursor_bitmaps += 1;
            }
            self.last_cursor = Some((c.x, c.y));
        }
    }
}

async fn next_frame(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    stats: &mut Stats,
    deadline: Duration,
) -> Result<Option<capture::Frame>> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => bail!("capture thread ended"),
            Ok(Some(Event::Frame(f))) => {
                stats.frames += 1;
                stats.add(&f.damage, &f.cursor, f.w, f.h);
                return Ok(Some(f));
            }
            Ok(Some(Event::MetaOnly { damage, cursor, .. })) => {
                stats.meta_only += 1;
                stats.add(&damage, &cursor, 0, 0);
            }
            Ok(Some(Event::Format { format, w, h, framerate, max_framerate })) => {
                eprintln!(
                    "format: {} ({format}) {w}x{h} framerate {}/{} max {}/{}",
                    capture::format_name(format), framerate.0, framerate.1, max_framerate.0, max_framerate.1
                );
            }
            Ok(Some(Event::State(s))) => eprintln!("pw: {s}"),
        }
    }
}

/// Collect everything for `secs` seconds; returns (stats, last frame)
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    secs: f64,
) -> Result<(Stats, Option<capture::Frame>)> {
    let mut st = Stats::default();
    let mut last = None;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if let Some(f) = next_frame(rx, &mut st, end - Instant::now()).await? {
            last = Some(f);
        }
    }
    Ok((st, last))
}

async fn key(rd: &mutter::RemoteDesktopSessionProxy<'_>, ks: u32, down: bool) -> Result<()> {
    Ok(rd.notify_keyboard_keysym(ks, down).await?)
}

/// Clipboard both ways through the RemoteDesktop session (text/plain;charset=utf-8).
async fn clipboard_test(rd: &mutter::RemoteDesktopSessionProxy<'static>, text: &str) -> Result<()> {
    use std::io::{Read, Write};
    const MIME: &str = "text/plain;charset=utf-8";
    const CTRL: u32 = 0xffe3;
    let mut owner = rd.receive_selection_owner_changed().await?;
    let mut transfer = rd.receive_selection_transfer().await?;
    rd.enable_clipboard(HashMap::new()).await?;
    // warm-up key (first key event of a session is dropped)
    key(rd, 0xffe1, true).await?;
    key(rd, 0xffe1, false).await?;
    // --- remote -> desktop: we offer text, the app pastes with Ctrl+V.
    // Answer EVERY SelectionTransfer (GTK may ask more than once) from a task.
    let rd2 = rd.clone();
    let text2 = text.to_string();
    let t0 = Instant::now();
    tokio::spawn(async move {
        while let Some(sig) = transfer.next().await {
            let Ok(args) = sig.args() else { continue };
            let serial = args.serial;
            eprintln!("SelectionTransfer mime={} serial={serial} at {:?}", args.mime_type, t0.elapsed());
            let ok = match rd2.selection_write(serial).await {
                Ok(fd) => {
                    let mut f = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
                    f.write_all(text2.as_bytes()).is_ok()
                }
                Err(e) => { eprintln!("SelectionWrite: {e}"); false }
            };
            let _ = rd2.selection_write_done(serial, ok).await;
        }
    });
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("mime-types", Value::from(vec![MIME]));
    rd.set_selection(o).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    key(rd, CTRL, true).await?;
    key(rd, 'v' as u32, true).await?;
    key(rd, 'v' as u32, false).await?;
    key(rd, CTRL, false).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("sending Ctrl+A Ctrl+C at {:?}", t0.elapsed());
    // --- desktop -> remote: Ctrl+A, Ctrl+C in the app, then read
    key(rd, CTRL, true).await?;
    key(rd, 'a' as u32, true).await?;
    key(rd, 'a' as u32, false).await?;
    key(rd, 'c' as u32, true).await?;
    key(rd, 'c' as u32, false).await?;
    key(rd, CTRL, false).await?;
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(end, owner.next()).await {
            Ok(Some(sig)) => {
                let args = sig.args()?;
                eprintln!(
                    "SelectionOwnerChanged at {:?}: session-is-owner={:?} mime-types={:?}",
                    t0.elapsed(),
                    args.options.get("session-is-owner").and_then(|v| bool::try_from(v).ok()),
                    args.options.get("mime-types").map(|v| format!("{v:?}").len())
                );
                let own = args.options.get("session-is-owner").and_then(|v| bool::try_from(v).ok()).unwrap_or(false);
                if own {
                    continue;
                }
                let fd = match rd.selection_read(MIME).await {
                    Ok(fd) => fd,
                    Err(e) => {
                        eprintln!("SelectionRead: {e} (waiting for the next owner change)");
                        continue;
                    }
                };
                // TRAP: the fd mutter returns is O_NONBLOCK (read gives EAGAIN): clear it and
                // read on a blocking thread (or use tokio's AsyncFd).
                let fd = std::os::fd::OwnedFd::from(fd);
                let t_read = Instant::now();
                let s = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
                    use std::os::fd::AsRawFd;
                    unsafe {
                        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                    }
                    let mut f = std::fs::File::from(fd);
                    let mut s = String::new();
                    f.read_to_string(&mut s)?;
                    Ok(s)
                })
                .await??;
                eprintln!("read took {:?}", t_read.elapsed());
                eprintln!("CLIPBOARD desktop->remote read {:?}", s);
                break;
            }
            _ => {
                eprintln!("CLIPBOARD desktop->remote: no SelectionOwnerChanged");
                break;
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = parse_args();
    let t0 = Instant::now();
    let conn = zbus::Connection::session().await.context("session bus")?;
    let sc = mutter::ScreenCastProxy::new(&conn).await?;
    eprintln!("ScreenCast Version = {}", sc.version().await?);

    // 1. RemoteDesktop session first (its id links the ScreenCast session to it)
    let mut sc_props: HashMap<&str, Value> = HashMap::new();
    let mut rds = None;
    if a.rd {
        let rd = mutter::RemoteDesktopProxy::new(&conn).await?;
        eprintln!(
            "RemoteDesktop Version = {}, SupportedDeviceTypes = {}",
            rd.version().await?,
            rd.supported_device_types().await?
        );
        let rd_path = rd.create_session().await?;
        let s = mutter::RemoteDesktopSessionProxy::builder(&conn).path(rd_path.clone())?.build().await?;
        let id = s.session_id().await?;
        eprintln!("RD session {} id {id}", rd_path.as_str());
        sc_props.insert("remote-desktop-session-id", Value::from(id));
        rds = Some(s);
    }
    if std::env::var("DISABLE_ANIM").is_ok() {
        // what gnome-remote-desktop does: no window animations while being watched
        sc_props.insert("disable-animations", Value::Bool(true));
    }
    // 2. ScreenCast session + RecordMonitor
    let sc_path = sc.create_session(sc_props).await?;
    let scs = mutter::ScreenCastSessionProxy::builder(&conn).path(sc_path.clone())?.build().await?;
    let mut rec_props: HashMap<&str, Value> = HashMap::new();
    rec_props.insert("cursor-mode", Value::U32(a.cursor_mode));
    let stream_path = scs.record_monitor(&a.connector, rec_props).await?;
    eprintln!("SC session {} stream {}", sc_path.as_str(), stream_path.as_str());
    let stream = mutter::ScreenCastStreamProxy::builder(&conn).path(stream_path.clone())?.build().await?;
    let mut added = stream.receive_pipewire_stream_added().await?;

    // experiment: a second monitor in the same session -> a second stream/node
    let mut added2 = None;
    if let Ok(c2) = std::env::var("SECOND_CONNECTOR") {
        let mut p2: HashMap<&str, Value> = HashMap::new();
        p2.insert("cursor-mode", Value::U32(a.cursor_mode));
        let sp2 = scs.record_monitor(&c2, p2).await?;
        let st2 = mutter::ScreenCastStreamProxy::builder(&conn).path(sp2.clone())?.build().await?;
        eprintln!("second stream {} params {:?}", sp2.as_str(), st2.parameters().await?.get("output-name"));
        added2 = Some((st2.receive_pipewire_stream_added().await?, st2));
    }
    // 3. Start (the RD session when linked; starting the linked SC session is refused)
    let t_start = Instant::now();
    match &rds {
        Some(_) if std::env::var("START_SC").is_ok() => scs.start().await?, // experiment
        Some(r) => r.start().await?,
        None => scs.start().await?,
    }
    let sig = tokio::time::timeout(Duration::from_secs(10), added.next())
        .await
        .context("no PipeWireStreamAdded in 10 s")?
        .context("signal stream ended")?;
    let node_id = sig.args()?.node_id;
    if let Some((mut a2, _st2)) = added2 {
        let n2 = tokio::time::timeout(Duration::from_secs(5), a2.next()).await?.context("no 2nd")?.args()?.node_id;
        eprintln!("second PipeWireStreamAdded node_id={n2}");
    }
    let t_node = t_start.elapsed();
    eprintln!("PipeWireStreamAdded node_id={node_id} after {:?}", t_node);
    eprintln!("stream Parameters: {:?}", stream.parameters().await?);

    // 4. PipeWire on its own thread
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (qtx, qrx) = pipewire::channel::channel::<()>();
    let copy = a.copy;
    let pw_thread = std::thread::spawn(move || {
        if let Err(e) = capture::run(node_id, tx, qrx, copy) {
            eprintln!("capture error: {e:#}");
        }
    });

    let mut st = Stats::default();
    let first = next_frame(&mut rx, &mut st, Duration::from_secs(10))
        .await?
        .context("no frame within 10 s")?;
    let t_first = t_start.elapsed();
    eprintln!(
        "FIRST FRAME {}x{} {} data_type={} after {:?} (from Start; {:?} from program start); damage={:?} cursor={:?}",
        first.w, first.h, capture::format_name(first.format), first.data_type, t_first, t0.elapsed(),
        first.damage.as_ref().map(|d| d.len()), first.cursor
    );
    if a.copy {
        save_png(&format!("{}/frame-first.png", a.out), &first)?;
        for (x, y) in [(160, 100), (480, 100), (800, 100), (1120, 100), (640, 600)] {
            if x < first.w && y < first.h {
                eprintln!("  pixel({x},{y}) = {:?}", px(&first, x, y));
            }
        }
    }

    if a.still > 0.0 {
        let c0 = cpu_ms();
        let (s, _) = collect(&mut rx, a.still).await?;
        let c = cpu_ms() - c0;
        eprintln!("STILL {:.1}s: {:?}; cpu {c} ms = {:.1}%", a.still, s, c as f64 / (a.still * 10.0));
    }

    if let Some(rd) = &rds {
        let sp = stream_path.as_str();
        if a.wiggle > 0.0 {
            // move the pointer in a circle for `wiggle` seconds: cursor metadata / damage
            let c0 = cpu_ms();
            let end = Instant::now() + Duration::from_secs_f64(a.wiggle);
            let mut stats = Stats::default();
            let mut i = 0u32;
            let mut lastf = None;
            while Instant::now() < end {
                let ang = i as f64 * 0.1;
                rd.notify_pointer_motion_absolute(sp, 640.0 + 200.0 * ang.cos(), 450.0 + 150.0 * ang.sin()).await?;
                i += 1;
                let tick = Instant::now() + Duration::from_millis(16);
                while Instant::now() < tick {
                    match next_frame(&mut rx, &mut stats, tick - Instant::now()).await? {
                        None => break,
                        Some(f) => lastf = Some(f),
                    }
                }
            }
            let c = cpu_ms() - c0;
            if let (Some(f), true) = (&lastf, a.copy) {
                save_png(&format!("{}/frame-wiggle.png", a.out), f)?;
                eprintln!("wiggle last frame cursor {:?}", f.cursor);
            }
            eprintln!(
                "WIGGLE {:.1}s ({i} motions): {:?}; cpu {c} ms = {:.1}%",
                a.wiggle, stats, c as f64 / (a.wiggle * 10.0)
            );
        }
        if std::env::var("LATENCY").is_ok() {
            // key-to-pixels: press+release 'x', time until the next frame arrives (static scene)
            rd.notify_keyboard_keysym(0xffe1, true).await?;
            rd.notify_keyboard_keysym(0xffe1, false).await?;
            let _ = collect(&mut rx, 0.3).await?;
            let mut v = Vec::new();
            for _ in 0..10 {
                let mut s = Stats::default();
                let t = Instant::now();
                rd.notify_keyboard_keysym('x' as u32, true).await?;
                rd.notify_keyboard_keysym('x' as u32, false).await?;
                if next_frame(&mut rx, &mut s, Duration::from_secs(2)).await?.is_some() {
                    v.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let _ = collect(&mut rx, 0.2).await?; // drain (cursor blink etc.)
            }
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            eprintln!("KEY-TO-FRAME ms (sorted): {:.1?}", v);
        }
        if let Some(text) = &a.text {
            // TRAP: mutter 43 drops the FIRST key event of a new RemoteDesktop session (the
            // virtual keyboard is created lazily). Warm up with a harmless Shift_L tap.
            if let Ok(ms) = std::env::var("WARMUP_MS") {
                rd.notify_keyboard_keysym(0xffe1, true).await?;
                rd.notify_keyboard_keysym(0xffe1, false).await?;
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            }
            let t = Instant::now();
            for ch in text.chars() {
                let ks = mutter::char_to_keysym(ch);
                rd.notify_keyboard_keysym(ks, true).await?;
                rd.notify_keyboard_keysym(ks, false).await?;
            }
            eprintln!("TYPED {:?} ({} chars) in {:?}", text, text.chars().count(), t.elapsed());
        }
        if let Ok(clip) = std::env::var("CLIPBOARD") {
            clipboard_test(rd, &clip).await?;
        }
        if let Some((x, y)) = a.click {
            // TRAP: like the keyboard, the first pointer event of a session is dropped
            // (virtual pointer created lazily): send one motion first.
            if std::env::var("WARMUP_MS").is_ok() {
                rd.notify_pointer_motion_absolute(sp, x, y).await?;
            }
            rd.notify_pointer_motion_absolute(sp, x, y).await?;
            if std::env::var("CLICK_SYNC").is_ok() {
                // wait until the stream's cursor metadata shows the pointer at (x,y)
                let t = Instant::now();
                let end = tokio::time::Instant::now() + Duration::from_millis(500);
                let mut seen = false;
                while !seen {
                    match tokio::time::timeout_at(end, rx.recv()).await {
                        Ok(Some(Event::Frame(capture::Frame { cursor: Some(c), .. })))
                        | Ok(Some(Event::MetaOnly { cursor: Some(c), .. })) => {
                            seen = c.x == x as i32 && c.y == y as i32;
                        }
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                eprintln!("cursor at target: {seen} after {:?}", t.elapsed());
            }
            if let Ok(ms) = std::env::var("CLICK_DELAY_MS") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            }
            rd.notify_pointer_button(mutter::BTN_LEFT, true).await?;
            if let Ok(ms) = std::env::var("HOLD_MS") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            }
            rd.notify_pointer_button(mutter::BTN_LEFT, false).await?;
            eprintln!("CLICKED at {x},{y}");
        }
        if a.text.is_some() || a.click.is_some() {
            // let the client redraw, then save the newest frame
            let (s, last) = collect(&mut rx, 1.0).await?;
            eprintln!("after input: {:?}", s);
            if let (Some(f), true) = (last, a.copy) {
                save_png(&format!("{}/frame-after-input.png", a.out), &f)?;
            }
        }
    }

    let _ = qtx.send(());
    let _ = pw_thread.join();
    match &rds {
        Some(r) => r.stop().await?,
        None => scs.stop().await?,
    }
    eprintln!("done in {:?}", t0.elapsed());
    Ok(())
}
