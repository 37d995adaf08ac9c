//! The wlroots backend (sway, Hyprland, river, …): frames through `wlr-screencopy` into shared
//! memory, input through a virtual keyboard (`zwp_virtual_keyboard_v1`) and a virtual pointer
//! (`zwlr_virtual_pointer_v1`).
//!
//! These compositors let any client of the user's Wayland socket capture and inject without a
//! prompt, so the helper (already running as the user, after Tether's consent dialog) just
//! connects to `$WAYLAND_DISPLAY`.
//!
//! The connection is driven inline: every call dispatches the queue itself, waiting on the socket
//! with a deadline (`poll`), so no thread is needed and nothing blocks longer than the call
//! allows.
//!
//! The clipboard goes through `wlr-data-control` ([`clipboard`]).
//!
//! Limits: screencopy has no cursor metadata, so [`Backend::pointer`] is `None` (frames are
//! taken without the cursor); keys in translate mode are typed through a US keymap we upload,
//! so keysyms it lacks (`é`, `€`) are refused.

mod clipboard;

use crate::backend::{Backend, Capture, Frame};
use crate::keymap::{self, US_XKB_KEYMAP, evdev};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use tether_protocol::helper::{self, HelperError, MAX_FRAME_BYTES, MAX_SIDE, PointerState};
use tether_protocol::keys::{KeyEvent, KeyMode, sym};
use tether_protocol::session::{DisplayInfo, InputEvent, MouseButton};
use tether_protocol::tiles::Rect;
use wayland_client::protocol::wl_pointer::{Axis, AxisSource, ButtonState};
use wayland_client::protocol::{wl_buffer, wl_output, wl_registry, wl_seat, wl_shm, wl_shm_pool};
use wayland_client::{Connection, Dispatch, EventQueue, Proxy, QueueHandle, WEnum, delegate_noop};
use wayland_protocols_misc::zwp_virtual_keyboard_v1::client::{
    zwp_virtual_keyboard_manager_v1::ZwpVirtualKeyboardManagerV1,
    zwp_virtual_keyboard_v1::ZwpVirtualKeyboardV1,
};
use wayland_protocols_wlr::data_control::v1::client::zwlr_data_control_manager_v1::ZwlrDataControlManagerV1;
use wayland_protocols_wlr::screencopy::v1::client::{
    zwlr_screencopy_frame_v1::{self, ZwlrScreencopyFrameV1},
    zwlr_screencopy_manager_v1::ZwlrScreencopyManagerV1,
};
use wayland_protocols_wlr::virtual_pointer::v1::client::{
    zwlr_virtual_pointer_manager_v1::ZwlrVirtualPointerManagerV1,
    zwlr_virtual_pointer_v1::ZwlrVirtualPointerV1,
};

/// How long the first frame of a display may take (the compositor renders it at once).
const FIRST_FRAME: Duration = Duration::from_secs(3);
/// How long a later capture waits for a change: `copy_with_damage` answers only when something
/// changed, and the agent asks ~30 times a second, so a still screen must not hold it up.
const CHANGE_WAIT: Duration = Duration::from_millis(50);
/// How long the compositor may take to describe the buffer it wants.
const BUFFER_WAIT: Duration = Duration::from_secs(2);
/// Between pointer motion and a button: sway drops the button when both arrive together (the
/// research prototype's trap 10).
const MOTION_SETTLE: Duration = Duration::from_millis(20);
/// After the virtual devices appear, before the first event: clients bind the seat's new
/// keyboard and pointer only once told the capability exists.
const DEVICE_SETTLE: Duration = Duration::from_millis(50);

/// The wlroots backend: one Wayland connection, its event queue and what it bound.
pub struct Wlr {
    conn: Connection,
    queue: EventQueue<State>,
    qh: QueueHandle<State>,
    state: State,
    shared: Option<Shared>,
    input: Option<Input>,
}

/// What the registry gave and the events received; the queue's dispatch target.
#[derive(Default)]
struct State {
    shm: Option<wl_shm::WlShm>,
    seat: Option<wl_seat::WlSeat>,
    screencopy: Option<ZwlrScreencopyManagerV1>,
    keyboards: Option<ZwpVirtualKeyboardManagerV1>,
    pointers: Option<ZwlrVirtualPointerManagerV1>,
    /// In the order the compositor announced them (display index = position).
    outputs: Vec<Output>,
    /// Events of the screencopy frame in flight (frames of older generations are ignored).
    frame: FrameEvents,
    generation: u64,
    data_control: Option<ZwlrDataControlManagerV1>,
    clip: clipboard::ClipState,
}

struct Output {
    /// The registry name, to notice the output's removal.
    global: u32,
    proxy: wl_output::WlOutput,
    x: i32,
    y: i32,
    width: u32,
    height: u32,
}

#[derive(Default)]
struct FrameEvents {
    /// The `wl_shm` buffer wanted: format, width, height, stride.
    buffer: Option<(WEnum<wl_shm::Format>, u32, u32, u32)>,
    buffer_done: bool,
    y_invert: bool,
    damage: Vec<Rect>,
    ready: bool,
    failed: bool,
}

/// The display being shared: its buffer (kept while size and format hold) and the copy in flight.
struct Shared {
    output: wl_output::WlOutput,
    buffer: Option<ShmBuffer>,
    /// A copy was asked for and has not completed: the next capture collects it.
    pending: Option<ZwlrScreencopyFrameV1>,
    /// Whether the buffer holds what the compositor drew; until then copies are full (`copy`),
    /// afterwards `copy_with_damage`.
    primed: bool,
}

struct ShmBuffer {
    file: File,
    pool: wl_shm_pool::WlShmPool,
    buffer: wl_buffer::WlBuffer,
    format: wl_shm::Format,
    width: u32,
    height: u32,
    stride: u32,
}

impl ShmBuffer {
    fn destroy(self) {
        self.buffer.destroy();
        self.pool.destroy();
    }
}

/// The virtual devices (created on first input) and the keys they hold.
struct Input {
    keyboard: ZwpVirtualKeyboardV1,
    pointer: ZwlrVirtualPointerV1,
    /// Keys down, in press order: (keysym that pressed it, evdev code).
    held: Vec<(u32, u16)>,
    /// Caps Lock / Num Lock as toggled by physical-mode presses.
    locked: u32,
    epoch: Instant,
}

impl Input {
    fn time(&self) -> u32 {
        // Millisecond timestamps wrap, as the protocol's do.
        (self.epoch.elapsed().as_millis() & 0xffff_ffff) as u32
    }

    fn depressed(&self) -> u32 {
        self.held
            .iter()
            .fold(0, |m, &(_, code)| m | keymap::modifier_mask(code))
    }

    fn send_modifiers(&self, depressed: u32) {
        self.keyboard.modifiers(depressed, 0, self.locked, 0);
    }

    fn key(&self, code: u16, down: bool) {
        // The protocol's key codes are evdev codes (it adds the XKB offset of 8 itself).
        self.keyboard
            .key(self.time(), u32::from(code), u32::from(down));
    }
}

fn wayland_error(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: wayland connection: {e}")
}

impl Wlr {
    /// Whether `$WAYLAND_DISPLAY` is a compositor with `wlr-screencopy`.
    pub fn available() -> bool {
        let Ok(conn) = Connection::connect_to_env() else {
            return false;
        };
        let mut queue = conn.new_event_queue();
        let qh = queue.handle();
        conn.display().get_registry(&qh, ());
        let mut state = State::default();
        queue.roundtrip(&mut state).is_ok() && state.screencopy.is_some()
    }

    /// Connects to `$WAYLAND_DISPLAY` and binds what the backend uses; fails when the
    /// compositor lacks screencopy or shared memory.
    pub fn connect() -> Result<Wlr, HelperError> {
        let unsupported = |e: String| HelperError::Unsupported(format!("wlroots: {e}"));
        let conn = Connection::connect_to_env()
            .map_err(|e| unsupported(format!("no Wayland compositor: {e}")))?;
        let mut queue = conn.new_event_queue();
        let qh = queue.handle();
        conn.display().get_registry(&qh, ());
        let mut state = State::default();
        // The first roundtrip binds the globals, the second brings the outputs' descriptions.
        for _ in 0..2 {
            queue
                .roundtrip(&mut state)
                .map_err(|e| unsupported(wayland_error("registry", e)))?;
        }
        if state.screencopy.is_none() {
            return Err(unsupported(
                "the compositor has no zwlr_screencopy_manager_v1".into(),
            ));
        }
        if state.shm.is_none() {
            return Err(unsupported("the compositor has no wl_shm".into()));
        }
        Ok(Wlr {
            conn,
            queue,
            qh,
            state,
            shared: None,
            input: None,
        })
    }

    /// Dispatches events until `done` holds or `deadline` passes; `Ok(false)` on the deadline.
    fn dispatch_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
    ) -> Result<bool, String> {
        loop {
            self.queue
                .dispatch_pending(&mut self.state)
                .map_err(|e| e.to_string())?;
            if done(&self.state) {
                return Ok(true);
            }
            self.conn.flush().map_err(|e| e.to_string())?;
            let Some(guard) = self.queue.prepare_read() else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let timeout = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let fd = guard.connection_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => {}
                Ok(_) => {
                    if let Err(e) = guard.read() {
                        // WouldBlock: another reader took the events; anything else is fatal.
                        if !matches!(&e, wayland_client::backend::WaylandError::Io(io)
                            if io.kind() == std::io::ErrorKind::WouldBlock)
                        {
                            return Err(e.to_string());
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn roundtrip(&mut self) -> Result<(), String> {
        self.queue
            .roundtrip(&mut self.state)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn capture_error(e: String) -> HelperError {
        HelperError::Capture(wayland_error("screencopy", e))
    }

    /// Starts a copy of the shared display into its buffer (re-made when the compositor wants
    /// another size or format).
    fn start_copy(&mut self) -> Result<(), HelperError> {
        let (Some(manager), Some(shm)) = (self.state.screencopy.clone(), self.state.shm.clone())
        else {
            return Err(HelperError::Capture("no screencopy manager".into()));
        };
        let Some(shared) = self.shared.as_ref() else {
            return Ok(());
        };
        self.state.generation += 1;
        self.state.frame = FrameEvents::default();
        let frame = manager.capture_output(0, &shared.output, &self.qh, self.state.generation);
        // Version 3 ends the buffer descriptions with `buffer_done`; older ones send one shm
        // `buffer` event.
        let v3 = manager.version() >= 3;
        let described = self
            .dispatch_until(Instant::now() + BUFFER_WAIT, |s| {
                s.frame.failed
                    || (if v3 {
                        s.frame.buffer_done
                    } else {
                        s.frame.buffer.is_some()
                    })
            })
            .map_err(Self::capture_error);
        let fail = |frame: &ZwlrScreencopyFrameV1, e: HelperError| {
            frame.destroy();
            Err(e)
        };
        match described {
            Err(e) => return fail(&frame, e),
            Ok(false) => {
                return fail(
                    &frame,
                    HelperError::Capture("the compositor did not describe the frame".into()),
                );
            }
            Ok(true) => {}
        }
        if self.state.frame.failed {
            return fail(
                &frame,
                HelperError::Capture("the compositor refused the copy".into()),
            );
        }
        let Some((format, width, height, stride)) = self.state.frame.buffer else {
            return fail(
                &frame,
                HelperError::Capture("the compositor offers no shared-memory buffer".into()),
            );
        };
        let format = match format {
            WEnum::Value(f @ (wl_shm::Format::Xrgb8888 | wl_shm::Format::Argb8888)) => f,
            WEnum::Value(f) => {
                return fail(
                    &frame,
                    HelperError::Capture(format!("unsupported format {f:?}")),
                );
            }
            WEnum::Unknown(f) => {
                return fail(
                    &frame,
                    HelperError::Capture(format!("unsupported format {f:#x}")),
                );
            }
        };
        let bytes = u64::from(stride) * u64::from(height);
        if width == 0
            || height == 0
            || width > MAX_SIDE
            || height > MAX_SIDE
            || u64::from(width) * u64::from(height) * 4 > MAX_FRAME_BYTES
            || u64::from(stride) < u64::from(width) * 4
            || bytes > 2 * MAX_FRAME_BYTES
        {
            return fail(
                &frame,
                HelperError::Capture(format!(
                    "the compositor offers an oversized frame ({width}×{height}, stride {stride})"
                )),
            );
        }
        let Some(shared) = self.shared.as_mut() else {
            return fail(&frame, HelperError::Capture("capture stopped".into()));
        };
        let fits = shared.buffer.as_ref().is_some_and(|b| {
            (b.format, b.width, b.height, b.stride) == (format, width, height, stride)
        });
        if !fits {
            if let Some(old) = shared.buffer.take() {
                old.destroy();
            }
            shared.primed = false;
            match new_buffer(&shm, &self.qh, format, width, height, stride) {
                Ok(b) => shared.buffer = Some(b),
                Err(e) => return fail(&frame, e),
            }
        }
        let Some(buffer) = shared.buffer.as_ref() else {
            return fail(&frame, HelperError::Capture("no buffer".into()));
        };
        if shared.primed {
            frame.copy_with_damage(&buffer.buffer);
        } else {
            frame.copy(&buffer.buffer);
        }
        shared.pending = Some(frame);
        self.conn
            .flush()
            .map_err(|e| Self::capture_error(e.to_string()))
    }

    /// Reads the completed copy out of the buffer: packed BGRX rows, top row first.
    fn read_frame(&self) -> Result<Frame, HelperError> {
        let Some(buffer) = self.shared.as_ref().and_then(|s| s.buffer.as_ref()) else {
            return Err(HelperError::Capture("no buffer".into()));
        };
        let (w, h) = (buffer.width as usize, buffer.height as usize);
        let row = w * 4;
        let invert = self.state.frame.y_invert;
        let mut pixels = vec![0u8; row * h];
        let read = |dst: &mut [u8], offset: u64| {
            buffer
                .file
                .read_exact_at(dst, offset)
                .map_err(|e| HelperError::Capture(format!("reading the frame: {e}")))
        };
        if buffer.stride as usize == row && !invert {
            read(&mut pixels, 0)?;
        } else {
            // XRGB8888/ARGB8888 are little-endian B,G,R,X in memory: our BGRX as is; only the
            // row padding and a bottom-up order need undoing.
            for (y, dst) in pixels.chunks_exact_mut(row).enumerate() {
                let src = if invert { h - 1 - y } else { y };
                read(dst, src as u64 * u64::from(buffer.stride))?;
            }
        }
        let (fw, fh) = (buffer.width, buffer.height);
        let damage = self.shared.as_ref().is_some_and(|s| s.primed);
        // Too many rectangles (or a fresh buffer): unknown, compare everything.
        let damage =
            (damage && self.state.frame.damage.len() <= helper::MAX_DAMAGE_RECTS).then(|| {
                self.state
                    .frame
                    .damage
                    .iter()
                    .map(|r| {
                        if invert {
                            Rect {
                                y: fh.saturating_sub(r.y.saturating_add(r.h)),
                                ..*r
                            }
                        } else {
                            *r
                        }
                    })
                    .filter_map(|r| helper::clip(r, fw, fh))
                    .collect()
            });
        Ok(Frame {
            width: fw,
            height: fh,
            pixels,
            damage,
        })
    }

    fn stop_sharing(&mut self) {
        if let Some(shared) = self.shared.take() {
            if let Some(frame) = shared.pending {
                frame.destroy();
            }
            if let Some(buffer) = shared.buffer {
                buffer.destroy();
            }
            // Events still on their way for the destroyed frame are of an old generation.
            self.state.generation += 1;
            if let Err(e) = self.conn.flush() {
                tracing::debug!("flushing after stopping capture: {e}");
            }
        }
    }

    /// The virtual keyboard and pointer, created on first use (see [`DEVICE_SETTLE`]).
    fn input_devices(&mut self) -> Result<&mut Input, HelperError> {
        if self.input.is_none() {
            let missing = |what: &str| {
                HelperError::Unsupported(format!("input on wlroots: the compositor has no {what}"))
            };
            let seat = self.state.seat.clone().ok_or_else(|| missing("wl_seat"))?;
            let keyboards = self
                .state
                .keyboards
                .clone()
                .ok_or_else(|| missing("zwp_virtual_keyboard_manager_v1"))?;
            let pointers = self
                .state
                .pointers
                .clone()
                .ok_or_else(|| missing("zwlr_virtual_pointer_manager_v1"))?;
            let input_error = |e: String| HelperError::Input(wayland_error("virtual devices", e));
            let keymap = keymap_file().map_err(|e| {
                HelperError::Input(format!("writing the keymap to shared memory: {e}"))
            })?;
            // Both devices first, then the keymap, then a roundtrip before any event: sway lost
            // every event when they came in the same flush as the devices (trap 10).
            let pointer = pointers.create_virtual_pointer(Some(&seat), &self.qh, ());
            let keyboard = keyboards.create_virtual_keyboard(&seat, &self.qh, ());
            let len = u32::try_from(US_XKB_KEYMAP.len() + 1).unwrap_or(u32::MAX);
            keyboard.keymap(1 /* XKB_V1 */, keymap.as_fd(), len);
            self.roundtrip().map_err(input_error)?;
            std::thread::sleep(DEVICE_SETTLE);
            self.input = Some(Input {
                keyboard,
                pointer,
                held: Vec::new(),
                locked: 0,
                epoch: Instant::now(),
            });
        }
        self.input
            .as_mut()
            .ok_or_else(|| HelperError::Input("no virtual devices".into()))
    }

    /// The layout's bounding box: absolute motion maps onto it.
    fn layout(&self) -> Option<(i32, i32, u32, u32)> {
        let outs = self.state.outputs.iter().filter(|o| o.width > 0);
        let x0 = outs.clone().map(|o| o.x).min()?;
        let y0 = outs.clone().map(|o| o.y).min()?;
        let x1 = outs
            .clone()
            .map(|o| i64::from(o.x) + i64::from(o.width))
            .max()?;
        let y1 = outs.map(|o| i64::from(o.y) + i64::from(o.height)).max()?;
        Some((
            x0,
            y0,
            u32::try_from(x1 - i64::from(x0)).ok()?,
            u32::try_from(y1 - i64::from(y0)).ok()?,
        ))
    }

    fn move_to(&mut self, x: i32, y: i32) -> Result<(), HelperError> {
        let (x0, y0, w, h) = self
            .layout()
            .ok_or_else(|| HelperError::Input("the compositor reports no display".into()))?;
        let clamp = |v: i32, origin: i32, extent: u32| {
            let v = i64::from(v) - i64::from(origin);
            u32::try_from(v.clamp(0, i64::from(extent.saturating_sub(1)))).unwrap_or(0)
        };
        let (px, py) = (clamp(x, x0, w), clamp(y, y0, h));
        let input = self.input_devices()?;
        input.pointer.motion_absolute(input.time(), px, py, w, h);
        input.pointer.frame();
        Ok(())
    }

    fn button(&mut self, button: MouseButton, down: bool) -> Result<(), HelperError> {
        let code = match button {
            MouseButton::Left => evdev::BTN_LEFT,
            MouseButton::Right => evdev::BTN_RIGHT,
            MouseButton::Middle => evdev::BTN_MIDDLE,
        };
        let input = self.input_devices()?;
        let state = if down {
            ButtonState::Pressed
        } else {
            ButtonState::Released
        };
        input.pointer.button(input.time(), code, state);
        input.pointer.frame();
        Ok(())
    }

    fn scroll(&mut self, dx: i32, dy: i32) -> Result<(), HelperError> {
        let input = self.input_devices()?;
        let t = input.time();
        input.pointer.axis_source(AxisSource::Wheel);
        // One wheel step is 15 units of the continuous axis, as libinput reports a detent.
        for (axis, steps) in [(Axis::VerticalScroll, dy), (Axis::HorizontalScroll, dx)] {
            if steps != 0 {
                input
                    .pointer
                    .axis_discrete(t, axis, f64::from(steps) * 15.0, steps);
            }
        }
        input.pointer.frame();
        Ok(())
    }

    /// Presses or releases keys; every key is checked before any is sent, so text with a
    /// character the layout cannot type is refused whole.
    fn keys(&mut self, events: &[KeyEvent]) -> Result<(), HelperError> {
        let mut plan = Vec::with_capacity(events.len());
        for ev in events {
            plan.push(plan_key(ev)?);
        }
        let input = self.input_devices()?;
        for (ev, planned) in events.iter().zip(plan) {
            match planned {
                Planned::Ignore => {}
                Planned::Key { code, shift } => press(input, ev, code, shift),
            }
        }
        Ok(())
    }

    fn release_all(&mut self) {
        if let Some(input) = self.input.as_mut() {
            for (_, code) in std::mem::take(&mut input.held).into_iter().rev() {
                input.key(code, false);
            }
            input.send_modifiers(0);
        }
    }
}

/// What one key event becomes.
enum Planned {
    Ignore,
    /// Press or release `code`; `shift`: whether Shift must be down at the press (`None`: as
    /// the user holds it, physical mode).
    Key {
        code: u16,
        shift: Option<bool>,
    },
}

fn plan_key(ev: &KeyEvent) -> Result<Planned, HelperError> {
    if ev.mode == KeyMode::Physical && ev.code != 0 {
        return Ok(Planned::Key {
            code: ev.code,
            shift: None,
        });
    }
    // In translate mode the keysym already carries the case: a remote Caps Lock (or Num Lock)
    // would only invert it, so the lock keys are not passed on.
    if matches!(ev.keysym, sym::CAPS_LOCK | sym::NUM_LOCK) {
        return Ok(Planned::Ignore);
    }
    match keymap::us_key(ev.keysym) {
        Some(k) => Ok(Planned::Key {
            code: k.code,
            shift: (keymap::modifier_mask(k.code) == 0).then_some(k.shift),
        }),
        None => Err(HelperError::Input(format!(
            "keysym {:#x}{} cannot be typed on this keyboard layout",
            ev.keysym,
            tether_protocol::keys::char_for_keysym(ev.keysym)
                .map(|c| format!(" ({c:?})"))
                .unwrap_or_default()
        ))),
    }
}

/// Sends one key, with Shift pressed or released around it when the keysym needs it.
fn press(input: &mut Input, ev: &KeyEvent, code: u16, shift: Option<bool>) {
    if !ev.down {
        // Release what the matching press pressed (the keysym may differ on release, e.g. when
        // Shift went up first; then the code tells).
        let at = input
            .held
            .iter()
            .rposition(|&(k, _)| k == ev.keysym && ev.mode == KeyMode::Translate)
            .or_else(|| input.held.iter().rposition(|&(_, c)| c == code));
        let Some(at) = at else {
            return;
        };
        let (_, code) = input.held.remove(at);
        input.key(code, false);
        input.send_modifiers(input.depressed());
        return;
    }
    let depressed = input.depressed();
    let has_shift = depressed & 1 != 0;
    match shift {
        Some(true) if !has_shift => {
            input.key(evdev::KEY_LEFTSHIFT, true);
            input.send_modifiers(depressed | 1);
            input.key(code, true);
            input.key(evdev::KEY_LEFTSHIFT, false);
            input.send_modifiers(depressed);
        }
        Some(false) if has_shift => {
            let shifts: Vec<u16> = input
                .held
                .iter()
                .map(|&(_, c)| c)
                .filter(|&c| keymap::modifier_mask(c) == 1)
                .collect();
            for &s in &shifts {
                input.key(s, false);
            }
            input.send_modifiers(depressed & !1);
            input.key(code, true);
            for &s in &shifts {
                input.key(s, true);
            }
            input.send_modifiers(depressed);
        }
        _ => {
            input.key(code, true);
            input.locked ^= keymap::lock_mask(code);
        }
    }
    if !input.held.iter().any(|&(_, c)| c == code) {
        input.held.push((ev.keysym, code));
    }
    input.send_modifiers(input.depressed());
}

/// The keymap as the virtual keyboard takes it: a file holding the text and a NUL.
fn keymap_file() -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("tether-keymap", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = File::from(fd);
    file.write_all(US_XKB_KEYMAP.as_bytes())?;
    file.write_all(&[0])?;
    Ok(file)
}

fn new_buffer(
    shm: &wl_shm::WlShm,
    qh: &QueueHandle<State>,
    format: wl_shm::Format,
    width: u32,
    height: u32,
    stride: u32,
) -> Result<ShmBuffer, HelperError> {
    let err = |e: String| HelperError::Capture(format!("shared-memory buffer: {e}"));
    let size = u64::from(stride) * u64::from(height);
    let too_big = || err(format!("{size} bytes"));
    let (size_i, w, h, s) = (
        i32::try_from(size).map_err(|_| too_big())?,
        i32::try_from(width).map_err(|_| too_big())?,
        i32::try_from(height).map_err(|_| too_big())?,
        i32::try_from(stride).map_err(|_| too_big())?,
    );
    let fd = rustix::fs::memfd_create("tether-frame", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| err(e.to_string()))?;
    let file = File::from(fd);
    file.set_len(size).map_err(|e| err(e.to_string()))?;
    let pool = shm.create_pool(file.as_fd(), size_i, qh, ());
    let buffer = pool.create_buffer(0, w, h, s, format, qh, ());
    Ok(ShmBuffer {
        file,
        pool,
        buffer,
        format,
        width,
        height,
        stride,
    })
}

impl Backend for Wlr {
    fn name(&self) -> &'static str {
        "wlroots"
    }

    fn compositor(&self) -> String {
        // The protocols carry no compositor name; sway announces itself in the environment.
        if std::env::var_os("SWAYSOCK").is_some() {
            return "sway".into();
        }
        std::env::var("XDG_CURRENT_DESKTOP").unwrap_or_else(|_| "wlroots".into())
    }

    fn displays(&mut self) -> Result<Vec<DisplayInfo>, HelperError> {
        // Outputs come and go: a roundtrip brings the registry and the new outputs up to date.
        self.roundtrip()
            .map_err(|e| HelperError::Capture(wayland_error("outputs", e)))?;
        Ok(self
            .state
            .outputs
            .iter()
            .filter(|o| o.width > 0 && o.height > 0)
            .enumerate()
            .map(|(i, o)| DisplayInfo {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                width: o.width,
                height: o.height,
                primary: i == 0,
            })
            .collect())
    }

    fn capture(&mut self, display: u32) -> Result<Capture, HelperError> {
        let output = self
            .state
            .outputs
            .iter()
            .filter(|o| o.width > 0 && o.height > 0)
            .nth(display as usize)
            .map(|o| o.proxy.clone())
            .ok_or(HelperError::NoSuchDisplay(display))?;
        if self.shared.as_ref().is_some_and(|s| s.output != output) {
            // One display at a time: another one starts over with a full frame.
            self.stop_sharing();
        }
        if self.shared.is_none() {
            self.shared = Some(Shared {
                output,
                buffer: None,
                pending: None,
                primed: false,
            });
        }
        if self.shared.as_ref().is_some_and(|s| s.pending.is_none())
            && let Err(e) = self.start_copy()
        {
            self.stop_sharing();
            return Err(e);
        }
        let primed = self.shared.as_ref().is_some_and(|s| s.primed);
        let wait = if primed { CHANGE_WAIT } else { FIRST_FRAME };
        let done =
            match self.dispatch_until(Instant::now() + wait, |s| s.frame.ready || s.frame.failed) {
                Ok(done) => done,
                Err(e) => {
                    self.stop_sharing();
                    return Err(Self::capture_error(e));
                }
            };
        if !done {
            if primed {
                // Nothing changed yet: the copy stays pending for the next call.
                return Ok(Capture::Unchanged);
            }
            self.stop_sharing();
            return Err(HelperError::Capture(format!(
                "no frame from display {display} within {} s",
                FIRST_FRAME.as_secs()
            )));
        }
        if let Some(frame) = self.shared.as_mut().and_then(|s| s.pending.take()) {
            frame.destroy();
        }
        if self.state.frame.failed {
            self.stop_sharing();
            return Err(HelperError::Capture(
                "the compositor failed the copy (display gone or resized?)".into(),
            ));
        }
        let frame = self.read_frame();
        if let Some(s) = self.shared.as_mut() {
            s.primed = frame.is_ok();
        }
        frame.map(Capture::Frame)
    }

    fn stop_capture(&mut self) {
        self.stop_sharing();
    }

    fn input(&mut self, event: &InputEvent) -> Result<(), HelperError> {
        match event {
            InputEvent::MouseMove { x, y } => self.move_to(*x, *y)?,
            InputEvent::Button { button, down } => self.button(*button, *down)?,
            InputEvent::Click { x, y, button } => {
                self.move_to(*x, *y)?;
                self.conn
                    .flush()
                    .map_err(|e| HelperError::Input(wayland_error("pointer", e)))?;
                std::thread::sleep(MOTION_SETTLE);
                self.button(*button, true)?;
                self.button(*button, false)?;
            }
            InputEvent::Scroll { dx, dy } => self.scroll(*dx, *dy)?,
            InputEvent::ReleaseKeys => self.release_all(),
            other => self.keys(&helper::key_events(other))?,
        }
        self.conn
            .flush()
            .map_err(|e| HelperError::Input(wayland_error("sending input", e)))
    }

    fn pointer(&mut self) -> Option<PointerState> {
        // wlr-screencopy reports no cursor position or image (only a choice to paint it into
        // the frame), so there is nothing to tell.
        None
    }

    fn get_clipboard(&mut self) -> Result<String, HelperError> {
        self.read_clipboard()
    }

    fn set_clipboard(&mut self, text: String) -> Result<(), HelperError> {
        self.write_clipboard(text)
    }
}

impl Drop for Wlr {
    fn drop(&mut self) {
        // Keys left down would stay down in the user's session after we are gone.
        self.release_all();
        self.stop_sharing();
        self.drop_clipboard();
        if let Some(input) = self.input.take() {
            input.keyboard.destroy();
            input.pointer.destroy();
        }
        if let Err(e) = self.conn.flush() {
            tracing::debug!("flushing at exit: {e}");
        }
    }
}

impl Dispatch<wl_registry::WlRegistry, ()> for State {
    fn event(
        s: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        match event {
            wl_registry::Event::Global {
                name,
                interface,
                version,
            } => match interface.as_str() {
                "wl_shm" => s.shm = Some(registry.bind(name, 1, qh, ())),
                "wl_seat" if s.seat.is_none() => {
                    s.seat = Some(registry.bind(name, version.min(7), qh, ()));
                }
                "wl_output" => s.outputs.push(Output {
                    global: name,
                    proxy: registry.bind(name, version.min(4), qh, name),
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 0,
                }),
                "zwlr_screencopy_manager_v1" => {
                    s.screencopy = Some(registry.bind(name, version.min(3), qh, ()));
                }
                "zwp_virtual_keyboard_manager_v1" => {
                    s.keyboards = Some(registry.bind(name, 1, qh, ()));
                }
                "zwlr_data_control_manager_v1" => {
                    s.data_control = Some(registry.bind(name, 1, qh, ()));
                }
                "zwlr_virtual_pointer_manager_v1" => {
                    s.pointers = Some(registry.bind(name, version.min(2), qh, ()));
                }
                _ => {}
            },
            wl_registry::Event::GlobalRemove { name } => {
                s.outputs.retain(|o| o.global != name);
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_output::WlOutput, u32> for State {
    fn event(
        s: &mut Self,
        _: &wl_output::WlOutput,
        event: wl_output::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(out) = s.outputs.iter_mut().find(|o| o.global == *global) else {
            return;
        };
        match event {
            wl_output::Event::Geometry { x, y, .. } => (out.x, out.y) = (x, y),
            wl_output::Event::Mode {
                flags: WEnum::Value(flags),
                width,
                height,
                ..
            } if flags.contains(wl_output::Mode::Current) => {
                // Bounded like frames, so a display never promises what capture refuses.
                let ok = |v: i32| u32::try_from(v).ok().filter(|v| *v <= MAX_SIDE);
                if let (Some(w), Some(h)) = (ok(width), ok(height)) {
                    (out.width, out.height) = (w, h);
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, u64> for State {
    fn event(
        s: &mut Self,
        _: &ZwlrScreencopyFrameV1,
        event: zwlr_screencopy_frame_v1::Event,
        generation: &u64,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if *generation != s.generation {
            return;
        }
        use zwlr_screencopy_frame_v1::Event as E;
        let f = &mut s.frame;
        match event {
            E::Buffer {
                format,
                width,
                height,
                stride,
            } => f.buffer = Some((format, width, height, stride)),
            E::BufferDone => f.buffer_done = true,
            E::Flags { flags } => {
                f.y_invert = flags
                    .into_result()
                    .is_ok_and(|f| f.contains(zwlr_screencopy_frame_v1::Flags::YInvert));
            }
            // Bounded: more rectangles than the protocol carries mean "everything".
            E::Damage {
                x,
                y,
                width,
                height,
            } if f.damage.len() <= helper::MAX_DAMAGE_RECTS => f.damage.push(Rect {
                x,
                y,
                w: width,
                h: height,
            }),
            E::Ready { .. } => f.ready = true,
            E::Failed => f.failed = true,
            _ => {}
        }
    }
}

delegate_noop!(State: ignore wl_shm::WlShm);
delegate_noop!(State: ignore wl_seat::WlSeat);
delegate_noop!(State: ignore wl_shm_pool::WlShmPool);
delegate_noop!(State: ignore wl_buffer::WlBuffer);
delegate_noop!(State: ZwlrScreencopyManagerV1);
delegate_noop!(State: ZwpVirtualKeyboardManagerV1);
delegate_noop!(State: ignore ZwpVirtualKeyboardV1);
delegate_noop!(State: ZwlrVirtualPointerManagerV1);
delegate_noop!(State: ignore ZwlrVirtualPointerV1);

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(keysym: u32, code: u16, mode: KeyMode) -> KeyEvent {
        KeyEvent {
            keysym,
            code,
            down: true,
            mode,
        }
    }

    fn planned(e: KeyEvent) -> Option<(u16, Option<bool>)> {
        match plan_key(&e) {
            Ok(Planned::Key { code, shift }) => Some((code, shift)),
            _ => None,
        }
    }

    #[test]
    fn keys_are_planned_by_position_or_by_keysym() {
        // Physical mode presses the code as is, whatever the keysym.
        assert_eq!(planned(ev(0x41, 16, KeyMode::Physical)), Some((16, None)));
        // Physical mode without a code falls back to the keysym.
        assert_eq!(
            planned(ev(0x41, 0, KeyMode::Physical)),
            Some((evdev::KEY_A, Some(true)))
        );
        assert_eq!(
            planned(ev(0x40, 0, KeyMode::Translate)),
            Some((evdev::KEY_2, Some(true)))
        );
        assert_eq!(
            planned(ev(0x61, 0, KeyMode::Translate)),
            Some((evdev::KEY_A, Some(false)))
        );
        // Modifiers go down as the user holds them, no Shift juggling.
        assert_eq!(
            planned(ev(sym::CONTROL_L, 0, KeyMode::Translate)),
            Some((evdev::KEY_LEFTCTRL, None))
        );
        assert_eq!(
            planned(ev(sym::SHIFT_L, 0, KeyMode::Translate)),
            Some((evdev::KEY_LEFTSHIFT, None))
        );
        assert!(matches!(
            plan_key(&ev(sym::CAPS_LOCK, 58, KeyMode::Translate)),
            Ok(Planned::Ignore)
        ));
        assert!(matches!(
            plan_key(&ev(0x0100_20ac, 0, KeyMode::Translate)),
            Err(HelperError::Input(m)) if m.contains("cannot be typed") && m.contains('€')
        ));
    }
}
