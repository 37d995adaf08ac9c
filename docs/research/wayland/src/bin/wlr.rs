//! wlroots (sway) prototype: one frame through wlr-screencopy (wl_shm, no GPU), then input
//! through zwp_virtual_keyboard_v1 + zwlr_virtual_pointer_v1.
//! usage: wlr [--out PNG] [--type TEXT] [--click X,Y]     (env WAYLAND_DISPLAY, XDG_RUNTIME_DIR)

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Instant;
use wayland_client::protocol::{wl_buffer, wl_output, wl_registry, wl_seat, wl_shm, wl_shm_pool};
use wayland_client::{Connection, Dispatch, Proxy, QueueHandle, WEnum, delegate_noop};
use wayland_protocols_misc::zwp_virtual_keyboard_v1::client::{
    zwp_virtual_keyboard_manager_v1::ZwpVirtualKeyboardManagerV1, zwp_virtual_keyboard_v1::ZwpVirtualKeyboardV1,
};
use wayland_protocols_wlr::screencopy::v1::client::{
    zwlr_screencopy_frame_v1::{self, ZwlrScreencopyFrameV1},
    zwlr_screencopy_manager_v1::ZwlrScreencopyManagerV1,
};
use wayland_protocols_wlr::virtual_pointer::v1::client::{
    zwlr_virtual_pointer_manager_v1::ZwlrVirtualPointerManagerV1, zwlr_virtual_pointer_v1::ZwlrVirtualPointerV1,
};

#[derive(Default)]
struct St {
    shm: Option<wl_shm::WlShm>,
    output: Option<wl_output::WlOutput>,
    seat: Option<wl_seat::WlSeat>,
    copy: Option<ZwlrScreencopyManagerV1>,
    vkbd: Option<ZwpVirtualKeyboardManagerV1>,
    vptr: Option<ZwlrVirtualPointerManagerV1>,
    /// (format, w, h, stride) offered for wl_shm
    shm_fmt: Option<(u32, u32, u32, u32)>,
    buffer_done: bool,
    ready: bool,
    failed: bool,
    damage: Vec<(u32, u32, u32, u32)>,
    flags: u32,
}

impl Dispatch<wl_registry::WlRegistry, ()> for St {
    fn event(s: &mut Self, r: &wl_registry::WlRegistry, e: wl_registry::Event, _: &(), _: &Connection, qh: &QueueHandle<Self>) {
        if let wl_registry::Event::Global { name, interface, version } = e {
            match interface.as_str() {
                "wl_shm" => s.shm = Some(r.bind(name, 1, qh, ())),
                "wl_output" if s.output.is_none() => s.output = Some(r.bind(name, version.min(4), qh, ())),
                "wl_seat" => s.seat = Some(r.bind(name, version.min(7), qh, ())),
                "zwlr_screencopy_manager_v1" => s.copy = Some(r.bind(name, version.min(3), qh, ())),
                "zwp_virtual_keyboard_manager_v1" => s.vkbd = Some(r.bind(name, 1, qh, ())),
                "zwlr_virtual_pointer_manager_v1" => s.vptr = Some(r.bind(name, version.min(2), qh, ())),
                _ => {}
            }
        }
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, ()> for St {
    fn event(s: &mut Self, _: &ZwlrScreencopyFrameV1, e: zwlr_screencopy_frame_v1::Event, _: &(), _: &Connection, _: &QueueHandle<Self>) {
        use zwlr_screencopy_frame_v1::Event::*;
        match e {
            Buffer { format, width, height, stride } => {
                let f = match format {
                    WEnum::Value(v) => v as u32,
                    WEnum::Unknown(u) => u,
                };
                s.shm_fmt = Some((f, width, height, stride));
            }
            BufferDone => s.buffer_done = true,
            Flags { flags } => s.flags = flags.into_result().map(|f| f.bits()).unwrap_or(0),
            Damage { x, y, width, height } => s.damage.push((x, y, width, height)),
            Ready { .. } => s.ready = true,
            Failed => s.failed = true,
            _ => {}
        }
    }
}

delegate_noop!(St: ignore wl_shm::WlShm);
delegate_noop!(St: ignore wl_output::WlOutput);
delegate_noop!(St: ignore wl_seat::WlSeat);
delegate_noop!(St: ignore wl_shm_pool::WlShmPool);
delegate_noop!(St: ignore wl_buffer::WlBuffer);
delegate_noop!(St: ZwlrScreencopyManagerV1);
delegate_noop!(St: ZwpVirtualKeyboardManagerV1);
delegate_noop!(St: ignore ZwpVirtualKeyboardV1);
delegate_noop!(St: ZwlrVirtualPointerManagerV1);
delegate_noop!(St: ignore ZwlrVirtualPointerV1);

fn memfd(name: &str, size: usize) -> std::io::Result<std::fs::File> {
    let cname = std::ffi::CString::new(name).unwrap();
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = unsafe { std::fs::File::from(OwnedFd::from_raw_fd(fd)) };
    f.set_len(size as u64)?;
    Ok(f)
}

/// evdev keycode + shift for US layout
fn us_key(c: char) -> Option<(u32, bool)> {
    const ROW: &[(&str, &str, u32)] = &[
        ("1234567890-=", "!@#$%^&*()_+", 2),
        ("qwertyuiop[]", "QWERTYUIOP{}", 16),
        ("asdfghjkl;'`", "ASDFGHJKL:\"~", 30),
        ("zxcvbnm,./", "ZXCVBNM<>?", 44),
    ];
    if c == ' ' { return Some((57, false)); }
    if c == '\n' { return Some((28, false)); }
    if c == '\\' { return Some((43, false)); }
    if c == '|' { return Some((43, true)); }
    for (lo, hi, base) in ROW {
        if let Some(i) = lo.chars().position(|x| x == c) { return Some((base + i as u32, false)); }
        if let Some(i) = hi.chars().position(|x| x == c) { return Some((base + i as u32, true)); }
    }
    None
}

const KEYMAP: &str = "xkb_keymap {\n xkb_keycodes { include \"evdev+aliases(qwerty)\" };\n xkb_types { include \"complete\" };\n xkb_compat { include \"complete\" };\n xkb_symbols { include \"pc+us+inet(evdev)\" };\n};\n";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).map(|i| args[i + 1].clone());
    let out = get("--out").unwrap_or("/tmp/wlr-frame.png".into());
    let t0 = Instant::now();
    let conn = Connection::connect_to_env()?;
    let mut q = conn.new_event_queue();
    let qh = q.handle();
    conn.display().get_registry(&qh, ());
    let mut s = St::default();
    q.roundtrip(&mut s)?;
    let (shm, output, copy) = (s.shm.clone().unwrap(), s.output.clone().unwrap(), s.copy.clone().expect("no wlr-screencopy"));

    // ---- screencopy: capture_output(overlay_cursor=0) -> buffer events -> copy -> ready
    let frame = copy.capture_output(0, &output, &qh, ());
    while !(s.buffer_done || (s.shm_fmt.is_some() && copy.version() < 3)) && !s.failed {
        q.blocking_dispatch(&mut s)?;
    }
    let (fmt, w, h, stride) = s.shm_fmt.expect("no wl_shm buffer offered");
    let size = (stride * h) as usize;
    let file = memfd("wlr-frame", size)?;
    let pool = shm.create_pool(file.as_fd(), size as i32, &qh, ());
    let buf = pool.create_buffer(0, w as i32, h as i32, stride as i32, wl_shm::Format::try_from(fmt).unwrap(), &qh, ());
    frame.copy(&buf);
    while !s.ready && !s.failed {
        q.blocking_dispatch(&mut s)?;
    }
    anyhow::ensure!(!s.failed, "screencopy failed");
    let map = unsafe { memmap(&file, size)? };
    eprintln!(
        "SCREENCOPY {w}x{h} stride {stride} wl_shm format {fmt:#x} flags {} (1 = y_invert) in {:?}",
        s.flags,
        t0.elapsed()
    );
    // wl_shm ARGB8888/XRGB8888 = little-endian B,G,R,A in memory
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        let yy = if s.flags & 1 != 0 { h - 1 - y } else { y };
        let row = &map[(yy * stride) as usize..(yy * stride + w * 4) as usize];
        for p in row.chunks_exact(4) {
            rgba.extend_from_slice(&[p[2], p[1], p[0], 255]);
        }
    }
    let mut enc = png::Encoder::new(std::io::BufWriter::new(std::fs::File::create(&out)?), w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgba)?;
    for (x, y) in [(160u32, 100u32), (480, 100), (800, 100), (1120, 100)] {
        let i = ((y * w + x) * 4) as usize;
        eprintln!("  pixel({x},{y}) = {:?}", &rgba[i..i + 3]);
    }
    frame.destroy();

    // ---- continuous capture with copy_with_damage: the compositor answers only when
    // something changed (damage events list the rects since the previous copy).
    if let Some(n) = get("--frames").map(|v| v.parse::<u32>().unwrap()) {
        let secs: f64 = get("--secs").map(|v| v.parse().unwrap()).unwrap_or(5.0);
        let cpu0 = cpu_ms();
        let t_all = Instant::now();
        let (mut got, mut rects, mut px, mut copy_ms) = (0u32, 0usize, 0u64, 0f64);
        for _ in 0..n {
            if t_all.elapsed().as_secs_f64() > secs { break; }
            s.ready = false; s.failed = false; s.buffer_done = false; s.damage.clear();
            let t = Instant::now();
            let fr = copy.capture_output(0, &output, &qh, ());
            while !(s.buffer_done || s.shm_fmt.is_some()) && !s.failed { q.blocking_dispatch(&mut s)?; }
            while !s.buffer_done && !s.failed { if !dispatch_timeout(&conn, &mut q, &mut s, 50)? { break; } }
            fr.copy_with_damage(&buf);
            let end = t_all + std::time::Duration::from_secs_f64(secs);
            while !s.ready && !s.failed && Instant::now() < end {
                dispatch_timeout(&conn, &mut q, &mut s, 50)?;
            }
            fr.destroy();
            if !s.ready { break; }
            copy_ms += t.elapsed().as_secs_f64() * 1000.0;
            got += 1;
            rects += s.damage.len();
            px += s.damage.iter().map(|d| d.2 as u64 * d.3 as u64).sum::<u64>();
        }
        let el = t_all.elapsed().as_secs_f64();
        let cpu = cpu_ms() - cpu0;
        eprintln!(
            "FRAMES {got} in {el:.2}s ({:.1} fps), avg wait+copy {:.1} ms, damage rects {rects}, avg damaged px/frame {}, cpu {cpu} ms = {:.1}%",
            got as f64 / el, copy_ms / got.max(1) as f64, px / got.max(1) as u64, cpu as f64 / (el * 10.0)
        );
    }
    buf.destroy();
    pool.destroy();

    // ---- input
    let seat = s.seat.clone().expect("no seat");
    // Create both virtual devices first. TRAP: with no real input devices the seat has no
    // keyboard/pointer capability until these exist; clients bind wl_keyboard/wl_pointer only
    // after the capability event, so events sent at once are lost. Wait before sending.
    let vp = s.vptr.as_ref().expect("no virtual pointer").create_virtual_pointer(Some(&seat), &qh, ());
    let kb = s.vkbd.as_ref().expect("no virtual keyboard").create_virtual_keyboard(&seat, &qh, ());
    let mut km = memfd("keymap", 0)?;
    km.write_all(KEYMAP.as_bytes())?;
    km.write_all(&[0])?;
    kb.keymap(1 /* XKB_V1 */, km.as_fd(), (KEYMAP.len() + 1) as u32);
    q.roundtrip(&mut s)?;
    let settle: u64 = std::env::var("SETTLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    std::thread::sleep(std::time::Duration::from_millis(settle));
    let mut t = t0.elapsed().as_millis() as u32;
    if let Some((x, y)) = get("--click").map(|c| {
        let (a, b) = c.split_once(',').unwrap();
        (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap())
    }) {
        vp.motion_absolute(t, x, y, w, h);
        vp.frame();
        q.roundtrip(&mut s)?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        t += 20;
        vp.button(t, 0x110, wayland_client::protocol::wl_pointer::ButtonState::Pressed);
        vp.frame();
        vp.button(t + 1, 0x110, wayland_client::protocol::wl_pointer::ButtonState::Released);
        vp.frame();
        q.roundtrip(&mut s)?;
        eprintln!("CLICKED {x},{y}");
    }
    if let Some(text) = get("--type") {
        let t1 = Instant::now();
        for c in text.chars() {
            let Some((code, shift)) = us_key(c) else {
                eprintln!("no key for {c:?}");
                continue;
            };
            t += 1;
            if shift {
                kb.key(t, 42, 1);
                kb.modifiers(1, 0, 0, 0);
            }
            kb.key(t, code, 1);
            kb.key(t, code, 0);
            if shift {
                kb.key(t, 42, 0);
                kb.modifiers(0, 0, 0, 0);
            }
        }
        q.roundtrip(&mut s)?;
        eprintln!("TYPED {text:?} in {:?}", t1.elapsed());
    }
    Ok(())
}

fn cpu_ms() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s.rsplit_once(')').map(|x| x.1).unwrap_or("").split_whitespace().collect();
    (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) * 10
}

/// dispatch with a timeout (ms); false on timeout
fn dispatch_timeout(conn: &Connection, q: &mut wayland_client::EventQueue<St>, s: &mut St, ms: i32) -> anyhow::Result<bool> {
    use std::os::fd::AsRawFd;
    if q.dispatch_pending(s)? > 0 { return Ok(true); }
    conn.flush()?;
    let Some(guard) = q.prepare_read() else { q.dispatch_pending(s)?; return Ok(true) };
    let mut pfd = libc::pollfd { fd: guard.connection_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r <= 0 { drop(guard); return Ok(false); }
    let _ = guard.read();
    q.dispatch_pending(s)?;
    Ok(true)
}

unsafe fn memmap(f: &std::fs::File, size: usize) -> std::io::Result<&'static [u8]> {
    use std::os::fd::AsRawFd;
    let p = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { std::slice::from_raw_parts(p as *const u8, size) })
}
