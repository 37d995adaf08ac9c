//! The viewer window (`tether connect`): the remote screen, scaled to fit or 1:1, input
//! forwarded, and a toolbar with display choice, special keys, live statistics and disconnect.
//! When the session ends (either side, or the window is closed) it asks for resolution notes
//! (skippable), which `tether connect` files on the session's audit record.
//!
//! The network runs on a tokio runtime in other threads; this window only drains the channel of
//! agent messages each frame, patches its copy of the screen, and acknowledges frames (which is
//! what gives the agent flow-control credit).

use crate::keymap::KeyTranslator;
use crate::remote::{decode_rect, pixels_len};
use eframe::egui;
use std::time::{Duration, Instant};
use tether_protocol::keys::KeyMode;
use tether_protocol::session::{
    Compression, DisplayInfo, InputEvent, Key, MouseButton, Permissions, ToAgent, ToViewer,
};
use tether_protocol::text::clean;
use tether_protocol::tiles::{patch, patch_xor};
use tokio::sync::mpsc;

pub struct Viewer {
    /// The keyboard, as key events (translate or physical mode, from the toolbar).
    keys: KeyTranslator,
    /// Whether the window had the keyboard focus last frame.
    focused: bool,
    /// When the viewer last told the agent it is there while holding keys.
    keep_alive_sent: Instant,
    /// When the oldest input not yet followed by a frame was sent.
    input_sent: Option<Instant>,
    /// Smoothed input-to-frame latency.
    latency_ms: f32,
    /// The remote pointer's image and hot spot, drawn over the screen.
    cursor_shape: Option<(egui::ColorImage, (u16, u16))>,
    cursor_texture: Option<egui::TextureHandle>,
    local_clipboard: Option<Option<arboard::Clipboard>>,
    /// H.264 decoder, made when the first H.264 frame arrives.
    decoder: Option<openh264::decoder::Decoder>,
    to_agent: mpsc::UnboundedSender<ToAgent>,
    from_agent: mpsc::Receiver<ToViewer>,
    title: String,
    displays: Vec<DisplayInfo>,
    display: u32,
    permissions: Permissions,
    fb: Vec<u8>,
    width: u32,
    height: u32,
    texture: Option<egui::TextureHandle>,
    dirty: bool,
    fit: bool,
    cursor: Option<(i32, i32)>,
    ended: Option<String>,
    /// The wrap-up form is showing: notes typed so far.
    wrap_up: Option<String>,
    wrap_up_focused: bool,
    /// Where saved notes go (read by `tether connect` after the window closes).
    notes_out: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    status: String,
    last_pointer: Option<(i32, i32)>,
    // statistics over the last second
    window_start: Instant,
    window_frames: u32,
    window_bytes: u64,
    window_encode_us: u64,
    fps: f32,
    kbps: f32,
    encode_ms: f32,
}

impl Viewer {
    pub fn new(
        to_agent: mpsc::UnboundedSender<ToAgent>,
        from_agent: mpsc::Receiver<ToViewer>,
        title: String,
        displays: Vec<DisplayInfo>,
        permissions: Permissions,
    ) -> Self {
        let _ = to_agent.send(ToAgent::StartStream {
            display: 0,
            max_in_flight: 2,
            h264: true,
        });
        Self {
            keys: KeyTranslator::default(),
            focused: false,
            keep_alive_sent: Instant::now(),
            input_sent: None,
            latency_ms: 0.0,
            cursor_shape: None,
            cursor_texture: None,
            local_clipboard: None,
            decoder: None,
            to_agent,
            from_agent,
            title,
            displays,
            display: 0,
            permissions,
            fb: Vec::new(),
            width: 0,
            height: 0,
            texture: None,
            dirty: false,
            fit: true,
            cursor: None,
            ended: None,
            wrap_up: None,
            wrap_up_focused: false,
            notes_out: Default::default(),
            status: String::new(),
            last_pointer: None,
            window_start: Instant::now(),
            window_frames: 0,
            window_bytes: 0,
            window_encode_us: 0,
            fps: 0.0,
            kbps: 0.0,
            encode_ms: 0.0,
        }
    }

    /// Redraws when the agent sends something instead of on a timer: the agent's messages pass
    /// through a thread that wakes the window, so an idle remote screen costs no redraws.
    pub fn wake_on_messages(mut self, ctx: egui::Context) -> Self {
        let (tx, rx) = mpsc::channel::<ToViewer>(4);
        let mut from_agent = std::mem::replace(&mut self.from_agent, rx);
        let spawned = std::thread::Builder::new()
            .name("viewer-wake".into())
            .spawn(move || {
                while let Some(msg) = from_agent.blocking_recv() {
                    if tx.blocking_send(msg).is_err() {
                        break;
                    }
                    ctx.request_repaint();
                }
                // The session is over: one more frame shows it.
                drop(tx);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.status = format!("cannot start the viewer's wake-up thread: {e}");
        }
        self
    }

    /// How keys are typed (the toolbar switches it too).
    pub fn key_mode(mut self, mode: KeyMode) -> Self {
        self.keys.mode = mode;
        self
    }

    /// Scale the screen to the window (true, the default) or show it 1:1.
    pub fn fit(mut self, fit: bool) -> Self {
        self.fit = fit;
        self
    }

    /// Resolution notes the technician saves in the wrap-up form land here.
    pub fn notes_out(mut self, out: std::sync::Arc<std::sync::Mutex<Option<String>>>) -> Self {
        self.notes_out = out;
        self
    }

    /// Ends the session (if it still runs) and shows the notes form.
    fn finish(&mut self) {
        if self.ended.is_none() {
            self.release_keys();
            self.send(ToAgent::Bye);
            self.ended = Some("you disconnected".into());
        }
        if self.wrap_up.is_none() {
            self.wrap_up = Some(String::new());
        }
    }

    /// The wrap-up form; returns true when the window should close.
    fn wrap_up_form(&mut self, ui: &mut egui::Ui) -> bool {
        let Some(notes) = self.wrap_up.as_mut() else {
            return false;
        };
        let mut close = false;
        ui.vertical_centered(|ui| {
            ui.add_space(24.0);
            if let Some(reason) = &self.ended {
                ui.heading(format!("Session ended: {reason}"));
            }
            ui.add_space(12.0);
            ui.label("Resolution notes for the ticket (optional; `tether notes` adds them later):");
            let edit = ui.add(
                egui::TextEdit::multiline(notes)
                    .desired_rows(6)
                    .desired_width(520.0)
                    .hint_text("What was wrong, what you did"),
            );
            if !self.wrap_up_focused {
                edit.request_focus();
                self.wrap_up_focused = true;
            }
            let (save_key, skip_key) = ui.input(|i| {
                (
                    i.modifiers.command && i.key_pressed(egui::Key::Enter),
                    i.key_pressed(egui::Key::Escape),
                )
            });
            ui.horizontal(|ui| {
                let save = ui.button("Save notes (Ctrl+Enter)").clicked() || save_key;
                if save && !notes.trim().is_empty() {
                    if let Ok(mut out) = self.notes_out.lock() {
                        *out = Some(notes.trim().to_string());
                    }
                    close = true;
                }
                if ui.button("Skip (Esc)").clicked() || skip_key {
                    close = true;
                }
            });
        });
        close
    }

    /// Lets go of every key held on the remote (focus lost, session ending).
    fn release_keys(&mut self) {
        for ev in self.keys.release_all() {
            self.input(ev);
        }
    }

    /// The keyboard: every key event of this frame goes to the remote while the screen is
    /// shown, whether or not the pointer is over it.
    fn keyboard(&mut self, ctx: &egui::Context) {
        let focused = ctx.input(|i| i.focused);
        if self.focused && !focused {
            self.release_keys();
        }
        self.focused = focused;
        if !self.permissions.control || self.ended.is_some() || self.wrap_up.is_some() {
            return;
        }
        let events = ctx.input(|i| i.events.clone());
        for ev in self.keys.frame(&events) {
            self.input(ev);
        }
        // While keys are down on the device, say so regularly: the agent lets go of them when
        // the viewer falls silent.
        if self.keys.any_held() {
            let every = Duration::from_millis(tether_protocol::session::HELD_KEYS_KEEPALIVE_MS);
            if self.keep_alive_sent.elapsed() >= every {
                self.send(ToAgent::KeepAlive);
                self.keep_alive_sent = Instant::now();
            }
            ctx.request_repaint_after(every);
        }
    }

    fn send(&self, msg: ToAgent) {
        let _ = self.to_agent.send(msg);
    }

    fn input(&mut self, ev: InputEvent) {
        if self.permissions.control {
            // Input-to-screen latency: from this input to the next frame that arrives.
            if self.input_sent.is_none() && !matches!(ev, InputEvent::MouseMove { .. }) {
                self.input_sent = Some(Instant::now());
            }
            self.send(ToAgent::Input(ev));
        }
    }

    fn drain(&mut self) {
        while let Ok(msg) = self.from_agent.try_recv() {
            match msg {
                ToViewer::Frame(f) => {
                    if let Some(t) = self.input_sent.take() {
                        let ms = t.elapsed().as_secs_f32() * 1000.0;
                        self.latency_ms = if self.latency_ms == 0.0 {
                            ms
                        } else {
                            0.8 * self.latency_ms + 0.2 * ms
                        };
                    }
                    if f.width != self.width || f.height != self.height {
                        // The size comes from the device: bounded before anything is allocated.
                        match pixels_len(f.width, f.height) {
                            Ok(len) => {
                                self.width = f.width;
                                self.height = f.height;
                                self.fb = vec![0; len];
                            }
                            Err(e) => {
                                self.ended = Some(e.to_string());
                                self.finish();
                                return;
                            }
                        }
                    }
                    for r in &f.rects {
                        self.window_bytes += r.data.len() as u64;
                        let (w, h) = (f.width, f.height);
                        if r.compression == Compression::H264 {
                            if let Err(e) = self.decode_h264(w, h, &r.data) {
                                self.status = e;
                            }
                            continue;
                        }
                        let applied = decode_rect(r).map_err(|e| e.to_string()).and_then(|px| {
                            match r.compression {
                                Compression::ZstdXor => patch_xor(&mut self.fb, w, h, r.rect, &px),
                                _ => patch(&mut self.fb, w, h, r.rect, &px),
                            }
                            .map_err(|e| e.to_string())
                        });
                        if let Err(e) = applied {
                            self.status = e;
                        }
                    }
                    self.window_frames += 1;
                    self.window_encode_us += u64::from(f.encode_us);
                    self.dirty = true;
                    self.send(ToAgent::FrameAck { seq: f.seq });
                }
                ToViewer::Cursor { x, y } => self.cursor = Some((x, y)),
                ToViewer::CursorShape {
                    width,
                    height,
                    hot_x,
                    hot_y,
                    rgba,
                } => {
                    let (w, h) = (usize::from(width), usize::from(height));
                    if rgba.len() == w * h * 4 && w > 0 && h > 0 {
                        let img = egui::ColorImage::from_rgba_premultiplied([w, h], &rgba);
                        self.cursor_shape = Some((img, (hot_x, hot_y)));
                        self.cursor_texture = None;
                    }
                }
                ToViewer::Clipboard { text } => {
                    // Keep the owner alive: on X11 the text is served by this process.
                    let clip = self
                        .local_clipboard
                        .get_or_insert_with(|| arboard::Clipboard::new().ok());
                    match clip.as_mut().map(|c| c.set_text(text)) {
                        Some(Ok(())) => self.status = "remote clipboard copied".into(),
                        Some(Err(e)) => self.status = format!("local clipboard: {e}"),
                        None => self.status = "no local clipboard".into(),
                    }
                }
                ToViewer::Error { message } => self.status = clean(&message, 200),
                ToViewer::Bye { reason } => {
                    self.ended = Some(clean(&reason, 200));
                    self.finish();
                }
                // Answers to requests this window never makes.
                _ => {}
            }
        }
        let elapsed = self.window_start.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let s = elapsed.as_secs_f32();
            self.fps = self.window_frames as f32 / s;
            self.kbps = self.window_bytes as f32 / 1024.0 / s;
            self.encode_ms = if self.window_frames > 0 {
                self.window_encode_us as f32 / self.window_frames as f32 / 1000.0
            } else {
                0.0
            };
            self.window_start = Instant::now();
            self.window_frames = 0;
            self.window_bytes = 0;
            self.window_encode_us = 0;
        }
    }

    /// Decodes one whole-screen H.264 frame into the framebuffer.
    fn decode_h264(&mut self, w: u32, h: u32, data: &[u8]) -> Result<(), String> {
        if self.decoder.is_none() {
            self.decoder = Some(
                openh264::decoder::Decoder::with_api_config(
                    openh264::OpenH264API::from_source(),
                    openh264::decoder::DecoderConfig::new(),
                )
                .map_err(|e| e.to_string())?,
            );
        }
        let Some(dec) = self.decoder.as_mut() else {
            return Ok(());
        };
        let Some(yuv) = dec.decode(data).map_err(|e| format!("H.264: {e}"))? else {
            return Ok(());
        };
        use openh264::formats::YUVSource;
        if yuv.dimensions() != (w as usize, h as usize) {
            return Err("H.264 frame size does not match the screen".into());
        }
        let mut rgba = vec![0u8; w as usize * h as usize * 4];
        yuv.write_rgba8(&mut rgba);
        for (dst, src) in self.fb.chunks_exact_mut(4).zip(rgba.chunks_exact(4)) {
            dst.copy_from_slice(&[src[2], src[1], src[0], 0]);
        }
        Ok(())
    }

    fn upload(&mut self, ctx: &egui::Context) {
        if !self.dirty || self.width == 0 {
            return;
        }
        self.dirty = false;
        let mut rgba = Vec::with_capacity(self.fb.len());
        for px in self.fb.chunks_exact(4) {
            rgba.extend_from_slice(&[px[2], px[1], px[0], 255]);
        }
        let image = egui::ColorImage::from_rgba_unmultiplied(
            [self.width as usize, self.height as usize],
            &rgba,
        );
        match &mut self.texture {
            Some(t) => t.set(image, egui::TextureOptions::LINEAR),
            None => {
                self.texture =
                    Some(ctx.load_texture("remote-screen", image, egui::TextureOptions::LINEAR))
            }
        }
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new(&self.title).strong());
            ui.separator();
            if self.displays.len() > 1 {
                let mut chosen = self.display;
                egui::ComboBox::from_id_salt("display")
                    .selected_text(format!("Display {}", chosen + 1))
                    .show_ui(ui, |ui| {
                        for d in &self.displays {
                            ui.selectable_value(
                                &mut chosen,
                                d.index,
                                format!("Display {} ({}x{})", d.index + 1, d.width, d.height),
                            );
                        }
                    });
                if chosen != self.display {
                    self.display = chosen;
                    self.send(ToAgent::StartStream {
                        display: chosen,
                        max_in_flight: 2,
                        h264: true,
                    });
                }
            }
            ui.checkbox(&mut self.fit, "Fit");
            if self.permissions.control {
                if ui.button("Ctrl+Alt+Del").clicked() {
                    self.input(InputEvent::Combo(vec![Key::Control, Key::Alt, Key::Delete]));
                }
                if ui.button("Alt+Tab").clicked() {
                    self.input(InputEvent::Combo(vec![Key::Alt, Key::Tab]));
                }
                // Keys the technician's own desktop would take for itself.
                ui.menu_button("Send keys", |ui| {
                    let combos: [(&str, &[Key]); 5] = [
                        ("Super", &[Key::Meta]),
                        ("Alt+F4", &[Key::Alt, Key::F(4)]),
                        ("Ctrl+Esc", &[Key::Control, Key::Escape]),
                        (
                            "Ctrl+Alt+Backspace",
                            &[Key::Control, Key::Alt, Key::Backspace],
                        ),
                        ("Alt+Shift+Tab", &[Key::Alt, Key::Shift, Key::Tab]),
                    ];
                    for (label, keys) in combos {
                        if ui.button(label).clicked() {
                            self.input(InputEvent::Combo(keys.to_vec()));
                            ui.close();
                        }
                    }
                });
                let mut mode = self.keys.mode;
                egui::ComboBox::from_id_salt("key-mode")
                    .selected_text(match mode {
                        KeyMode::Translate => "Keys: translate",
                        KeyMode::Physical => "Keys: physical",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut mode, KeyMode::Translate, "Translate")
                            .on_hover_text("Type the characters of your keyboard layout");
                        ui.selectable_value(&mut mode, KeyMode::Physical, "Physical")
                            .on_hover_text("Press the same keys; the remote layout decides");
                    });
                if mode != self.keys.mode {
                    self.release_keys();
                    self.keys.mode = mode;
                }
            }
            if self.permissions.clipboard {
                if ui
                    .button("Paste to remote")
                    .on_hover_text("Send this computer's clipboard text to the remote clipboard")
                    .clicked()
                {
                    match arboard::Clipboard::new().and_then(|mut c| c.get_text()) {
                        Ok(text) => self.send(ToAgent::SetClipboard { text }),
                        Err(e) => self.status = format!("local clipboard: {e}"),
                    }
                }
                if ui
                    .button("Copy from remote")
                    .on_hover_text("Fetch the remote clipboard text into this computer's clipboard")
                    .clicked()
                {
                    self.send(ToAgent::GetClipboard);
                }
            }
            if !self.permissions.control {
                ui.label("view only");
            }
            ui.separator();
            ui.label(format!(
                "{:.0} fps  {:.0} KB/s  encode {:.1} ms  latency {:.0} ms",
                self.fps, self.kbps, self.encode_ms, self.latency_ms
            ));
            if ui.button("Disconnect").clicked() {
                self.finish();
            }
        });
        if !self.status.is_empty() {
            ui.colored_label(egui::Color32::YELLOW, &self.status);
        }
    }

    fn screen(&mut self, ui: &mut egui::Ui) {
        let Some(tex) = &self.texture else {
            ui.centered_and_justified(|ui| ui.label("waiting for the first frame…"));
            return;
        };
        let natural = egui::vec2(self.width as f32, self.height as f32);
        let size = if self.fit {
            let avail = ui.available_size();
            let k = (avail.x / natural.x).min(avail.y / natural.y).max(0.05);
            natural * k
        } else {
            natural
        };
        let resp = ui.add(egui::Image::new((tex.id(), size)).sense(egui::Sense::click_and_drag()));
        // Tab, arrows and Escape belong to the remote, not to egui's focus navigation.
        resp.request_focus();
        ui.memory_mut(|m| {
            m.set_focus_lock_filter(
                resp.id,
                egui::EventFilter {
                    tab: true,
                    horizontal_arrows: true,
                    vertical_arrows: true,
                    escape: true,
                },
            )
        });
        // The remote pointer, drawn where the device says it is.
        if let (Some((x, y)), Some((img, (hx, hy)))) = (self.cursor, &self.cursor_shape) {
            let tex = self.cursor_texture.get_or_insert_with(|| {
                ui.ctx()
                    .load_texture("remote-cursor", img.clone(), egui::TextureOptions::NEAREST)
            });
            let k = size.x / natural.x;
            let at = resp.rect.min
                + egui::vec2(
                    (x - i32::from(*hx)) as f32 * k,
                    (y - i32::from(*hy)) as f32 * k,
                );
            let csize = egui::vec2(img.size[0] as f32, img.size[1] as f32) * k;
            ui.painter().image(
                tex.id(),
                egui::Rect::from_min_size(at, csize),
                egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                egui::Color32::WHITE,
            );
        }
        let to_remote = |p: egui::Pos2| -> (i32, i32) {
            let rel = (p - resp.rect.min) / size;
            (
                (rel.x * natural.x).clamp(0.0, natural.x - 1.0) as i32,
                (rel.y * natural.y).clamp(0.0, natural.y - 1.0) as i32,
            )
        };
        if !self.permissions.control {
            return;
        }
        if let Some(p) = resp.hover_pos() {
            let rp = to_remote(p);
            if self.last_pointer != Some(rp) {
                self.last_pointer = Some(rp);
                self.input(InputEvent::MouseMove { x: rp.0, y: rp.1 });
            }
        }
        let events = ui.input(|i| i.events.clone());
        for ev in events {
            match ev {
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } if resp.rect.contains(pos) => {
                    let b = match button {
                        egui::PointerButton::Secondary => MouseButton::Right,
                        egui::PointerButton::Middle => MouseButton::Middle,
                        _ => MouseButton::Left,
                    };
                    let (x, y) = to_remote(pos);
                    self.input(InputEvent::MouseMove { x, y });
                    self.input(InputEvent::Button {
                        button: b,
                        down: pressed,
                    });
                }
                egui::Event::MouseWheel { delta, .. } if resp.hovered() => {
                    let dy = -delta.y.signum() as i32;
                    if dy != 0 {
                        self.input(InputEvent::Scroll { dx: 0, dy });
                    }
                }
                _ => {}
            }
        }
    }
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.drain();
        let ctx = ui.ctx().clone();
        self.keyboard(&ctx);
        self.upload(&ctx);
        // Closing the window during a session goes through the notes form first; closing it
        // again (or Skip) closes for good.
        if ctx.input(|i| i.viewport().close_requested()) && self.wrap_up.is_none() {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.finish();
        }
        if self.wrap_up.is_none() {
            egui::Panel::top("toolbar").show(ui, |ui| self.toolbar(ui));
        }
        let mut close = false;
        egui::CentralPanel::default().show(ui, |ui| {
            if self.wrap_up.is_some() {
                close = self.wrap_up_form(ui);
            } else if let Some(reason) = &self.ended {
                ui.centered_and_justified(|ui| ui.heading(format!("Session ended: {reason}")));
            } else {
                self.screen(ui);
            }
        });
        if close {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        // Frames, the pointer and the session's end wake the window (`wake_on_messages`), local
        // input wakes it by itself; the statistics only need a slow tick.
        // The notes form is ordinary egui (focus moves over frames): it gets the steady tick the
        // whole window had before (only while the form is up).
        ctx.request_repaint_after(if self.wrap_up.is_some() || self.ended.is_some() {
            Duration::from_millis(8)
        } else {
            Duration::from_secs(1)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::session::FrameUpdate;

    fn viewer() -> (
        Viewer,
        mpsc::Sender<ToViewer>,
        mpsc::UnboundedReceiver<ToAgent>,
    ) {
        let (to_agent, to_agent_rx) = mpsc::unbounded_channel();
        let (from_agent_tx, from_agent) = mpsc::channel(4);
        let v = Viewer::new(
            to_agent,
            from_agent,
            "test".into(),
            Vec::new(),
            Permissions::VIEW,
        );
        (v, from_agent_tx, to_agent_rx)
    }

    fn frame(width: u32, height: u32) -> ToViewer {
        ToViewer::Frame(FrameUpdate {
            seq: 1,
            display: 0,
            width,
            height,
            rects: Vec::new(),
            encode_us: 0,
        })
    }

    /// Reproduces the review finding: a device announcing a huge screen made the viewer
    /// allocate `width × height × 4` bytes (here 4 × 65535² ≈ 16 GiB, or an overflow).
    #[test]
    fn a_frame_larger_than_8192_square_is_refused_without_allocating() {
        for (w, h) in [
            (65_535, 65_535),
            (u32::MAX, u32::MAX),
            (8193, 10),
            (10, 8193),
        ] {
            let (mut v, tx, _rx) = viewer();
            tx.try_send(frame(w, h)).unwrap();
            v.drain();
            assert!(v.fb.is_empty(), "{w}x{h} allocated {} bytes", v.fb.len());
            let ended = v.ended.clone().unwrap_or_default();
            assert!(ended.contains("at most 8192x8192"), "{w}x{h}: {ended:?}");
        }
        let (mut v, tx, _rx) = viewer();
        tx.try_send(frame(1920, 1080)).unwrap();
        v.drain();
        assert_eq!(v.fb.len(), 1920 * 1080 * 4);
        assert!(v.ended.is_none());
    }
}
