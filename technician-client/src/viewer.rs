//! The viewer window (`tether connect`): the remote screen, scaled to fit or 1:1, input
//! forwarded, and a toolbar with display choice, special keys, live statistics and disconnect.
//! When the session ends (either side, or the window is closed) it asks for resolution notes
//! (skippable), which `tether connect` files on the session's audit record.
//!
//! The network runs on a tokio runtime in other threads. A decoder thread (`decode.rs`) takes
//! the agent's messages, decodes frames, acknowledges them (which is what gives the agent
//! flow-control credit) and wakes this window, which only uploads the changed parts of the
//! screen to its texture and draws.

mod decode;
mod present;

use crate::keymap::KeyTranslator;
use decode::{Damage, Decoder, Event, Shared, lock, sub_image};
use eframe::egui;
use std::time::{Duration, Instant};
use tether_protocol::keys::KeyMode;
use tether_protocol::session::{
    DisplayInfo, InputEvent, Key, MouseButton, Permissions, ToAgent, ToViewer,
};
use tokio::sync::mpsc;

pub struct Viewer {
    /// The keyboard, as key events (translate or physical mode, from the toolbar).
    keys: KeyTranslator,
    /// Whether the window had the keyboard focus last frame.
    focused: bool,
    /// When the viewer last told the agent it is there while holding keys.
    keep_alive_sent: Instant,
    /// Smoothed input-to-frame latency (measured by the decoder).
    latency_ms: f32,
    /// The remote pointer's image and hot spot, drawn over the screen.
    cursor_shape: Option<(egui::ColorImage, (u16, u16))>,
    cursor_texture: Option<egui::TextureHandle>,
    local_clipboard: Option<Option<arboard::Clipboard>>,
    to_agent: mpsc::UnboundedSender<ToAgent>,
    /// What the decoder publishes: the screen, what changed, pointer, events, statistics.
    shared: Shared,
    /// The decoder and the agent's messages until `wake_on_messages` starts its thread.
    pending: Option<(Decoder, mpsc::Receiver<ToViewer>)>,
    /// Draws the screen into a child window, only what changed (`present.rs`); `None` when
    /// that is not possible here, and egui draws it.
    presenter: Option<std::sync::Arc<present::Presenter>>,
    /// The presenter draws the screen where egui lays it out (when nothing lies over it).
    native: bool,
    /// Nothing of egui's (menu, tooltip) lay over the screen last frame: the presenter may
    /// show it.
    overlay_free: bool,
    /// Where this frame laid out the screen for the presenter, in points.
    native_rect: Option<egui::Rect>,
    title: String,
    displays: Vec<DisplayInfo>,
    display: u32,
    /// The bandwidth cap of the stream (kilobits per second).
    max_kbps: Option<u32>,
    permissions: Permissions,
    /// Size of the texture (the remote screen as last uploaded).
    width: u32,
    height: u32,
    texture: Option<egui::TextureHandle>,
    /// How the texture is sampled: nearest texel while the screen is shown 1:1 (exact, and
    /// far cheaper for a software renderer), linear when it is scaled.
    filter: egui::TextureOptions,
    /// The sampling the texture was last uploaded whole with.
    uploaded_filter: egui::TextureOptions,
    fit: bool,
    cursor: Option<(i32, i32)>,
    ended: Option<String>,
    /// The wrap-up form is showing: notes typed so far.
    wrap_up: Option<String>,
    wrap_up_focused: bool,
    /// Ctrl is down (from its own key events) while the wrap-up form is up.
    wrap_up_ctrl: bool,
    /// Where saved notes go (read by `tether connect` after the window closes).
    notes_out: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    status: String,
    last_pointer: Option<(i32, i32)>,
    // statistics over the last second
    window_start: Instant,
    /// No statistics tick is pending (nothing happened in the last window).
    window_idle: bool,
    window_frames: u32,
    window_bytes: u64,
    window_encode_us: u64,
    fps: f32,
    kbps: f32,
    encode_ms: f32,
}

/// The stream features this viewer decodes ([`ToAgent::StreamOptions`]), and the bandwidth
/// cap asked for.
fn stream_options(max_kbps: Option<u32>) -> ToAgent {
    use tether_protocol::session::stream_feature;
    let mut features = vec![
        stream_feature::PALETTE.to_string(),
        stream_feature::COPY_RECT.to_string(),
        stream_feature::MOVE_RECT.to_string(),
        stream_feature::RAW_PALETTE.to_string(),
        stream_feature::COMPACT.to_string(),
    ];
    features.extend(max_kbps.map(tether_protocol::pace::announce));
    ToAgent::StreamOptions(features)
}

/// The toolbar's bandwidth choices (kilobits per second; `None`: no cap).
const BANDWIDTHS: [(Option<u32>, &str); 5] = [
    (None, "No limit"),
    (Some(8_000), "8 Mbit/s"),
    (Some(2_000), "2 Mbit/s"),
    (Some(1_000), "1 Mbit/s"),
    (Some(256), "256 kbit/s"),
];

/// How a chosen cap reads in the toolbar.
fn bandwidth_label(k: Option<u32>) -> String {
    BANDWIDTHS
        .iter()
        .find(|(v, _)| *v == k)
        .map(|(_, l)| (*l).to_string())
        .unwrap_or_else(|| format!("{} kbit/s", k.unwrap_or(0)))
}

impl Viewer {
    pub fn new(
        to_agent: mpsc::UnboundedSender<ToAgent>,
        from_agent: mpsc::Receiver<ToViewer>,
        title: String,
        displays: Vec<DisplayInfo>,
        permissions: Permissions,
        max_kbps: Option<u32>,
    ) -> Self {
        // What this viewer decodes beyond the base encodings (an older agent skips it).
        let _ = to_agent.send(stream_options(max_kbps));
        let _ = to_agent.send(ToAgent::StartStream {
            display: 0,
            max_in_flight: 2,
            h264: true,
        });
        let shared = Shared::default();
        let decoder = Decoder::new(shared.clone(), to_agent.clone());
        Self {
            keys: KeyTranslator::default(),
            focused: false,
            keep_alive_sent: Instant::now(),
            latency_ms: 0.0,
            cursor_shape: None,
            cursor_texture: None,
            local_clipboard: None,
            to_agent,
            shared,
            pending: Some((decoder, from_agent)),
            presenter: None,
            native: false,
            overlay_free: true,
            native_rect: None,
            title,
            displays,
            display: 0,
            permissions,
            width: 0,
            height: 0,
            texture: None,
            filter: egui::TextureOptions::NEAREST,
            uploaded_filter: egui::TextureOptions::NEAREST,
            fit: true,
            max_kbps,
            cursor: None,
            ended: None,
            wrap_up: None,
            wrap_up_focused: false,
            wrap_up_ctrl: false,
            notes_out: Default::default(),
            status: String::new(),
            last_pointer: None,
            window_start: Instant::now(),
            window_idle: true,
            window_frames: 0,
            window_bytes: 0,
            window_encode_us: 0,
            fps: 0.0,
            kbps: 0.0,
            encode_ms: 0.0,
        }
    }

    /// Starts the decoder thread, which takes the agent's messages, decodes and acknowledges
    /// frames, and wakes the window when there is something to show: an idle remote screen
    /// costs no redraws, and decoding never runs on the window's thread.
    pub fn wake_on_messages(mut self, ctx: egui::Context) -> Self {
        if let Some((decoder, from_agent)) = self.pending.take()
            && let Err(e) = decoder.spawn(from_agent, ctx)
        {
            self.status = format!("cannot start the viewer's decoder thread: {e}");
        }
        self
    }

    /// Draws the screen straight into the viewer's X11 window where it can (set
    /// `TETHER_VIEWER_DRAW=egui` to keep every frame in egui, e.g. to compare). Call before
    /// [`Viewer::wake_on_messages`].
    pub fn present_in(mut self, window: &impl raw_window_handle::HasWindowHandle) -> Self {
        use raw_window_handle::RawWindowHandle;
        if std::env::var("TETHER_VIEWER_DRAW").is_ok_and(|v| v == "egui") {
            return self;
        }
        let parent = match window.window_handle().map(|h| h.as_raw()) {
            Ok(RawWindowHandle::Xlib(h)) => u32::try_from(h.window).ok(),
            Ok(RawWindowHandle::Xcb(h)) => Some(h.window.get()),
            _ => None,
        };
        let made = parent
            .ok_or(present::PresentError::NotX11)
            .and_then(present::Presenter::new);
        match made {
            Ok(p) => {
                tracing::debug!("viewer: drawing the screen into a child window");
                if let Some((decoder, _)) = self.pending.as_mut() {
                    decoder.presenter = Some(p.clone());
                }
                self.presenter = Some(p);
                self.native = true;
            }
            Err(e) => tracing::info!("viewer: drawing the screen with egui: {e}"),
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
            let ctrl = &mut self.wrap_up_ctrl;
            let (save_key, skip_key) = ui.input(|i| {
                (
                    crate::keymap::ctrl_enter(&i.events, ctrl),
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
            if !matches!(ev, InputEvent::MouseMove { .. }) {
                let mut s = lock(&self.shared);
                if s.input_sent.is_none() {
                    s.input_sent = Some(Instant::now());
                }
            }
            self.send(ToAgent::Input(ev));
        }
    }

    /// Takes what the decoder published since the last frame: events, the pointer, the
    /// statistics, and the changed parts of the screen, which go to the texture (all of it on
    /// the first frame, after a size change and when the sampling changes, else only the
    /// changed rectangles).
    fn take_updates(&mut self, ctx: &egui::Context) {
        let (events, shape, upload) = {
            let mut s = lock(&self.shared);
            self.cursor = s.cursor;
            self.latency_ms = s.latency_ms;
            self.window_frames += std::mem::take(&mut s.frames);
            self.window_bytes += std::mem::take(&mut s.bytes);
            self.window_encode_us += std::mem::take(&mut s.encode_us);
            let damage = std::mem::take(&mut s.damage);
            let resized = s.width != self.width || s.height != self.height;
            let refilter = self.uploaded_filter != self.filter;
            let upload = if s.width == 0 || s.height == 0 {
                Upload::Nothing
            } else if resized || refilter || self.texture.is_none() || damage == Damage::Full {
                self.width = s.width;
                self.height = s.height;
                Upload::Whole(egui::ColorImage::new(
                    [s.width as usize, s.height as usize],
                    s.pixels.clone(),
                ))
            } else if let Damage::Regions(regions) = damage {
                Upload::Parts(
                    regions
                        .into_iter()
                        .map(|r| {
                            let pos = [r.x as usize, r.y as usize];
                            (pos, sub_image(&s.pixels, s.width, r))
                        })
                        .collect(),
                )
            } else {
                Upload::Nothing
            };
            (std::mem::take(&mut s.events), s.cursor_shape.take(), upload)
        };
        if let Some(shape) = shape {
            self.cursor_shape = Some(shape);
            self.cursor_texture = None;
        }
        for e in events {
            self.event(e);
        }
        let options = self.filter;
        if matches!(upload, Upload::Whole(_)) {
            self.uploaded_filter = options;
        }
        match (upload, &mut self.texture) {
            (Upload::Nothing, _) => {}
            (Upload::Whole(image), Some(t)) => t.set(image, options),
            (Upload::Whole(image), None) => {
                self.texture = Some(ctx.load_texture("remote-screen", image, options))
            }
            (Upload::Parts(parts), Some(t)) => {
                for (pos, image) in parts {
                    t.set_partial(pos, image, options);
                }
            }
            (Upload::Parts(_), None) => {}
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Clipboard(text) => {
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
            Event::Status(line) => self.status = line,
            Event::Ended(reason) => {
                self.ended = Some(reason);
                self.finish();
            }
        }
    }

    /// Frames per second, bytes per second and encode time over the last second or so. Ticks
    /// once a second only while frames arrive (and once more to show that they stopped).
    fn statistics(&mut self, ctx: &egui::Context) {
        let busy = self.window_frames > 0;
        if self.window_idle {
            if !busy {
                return;
            }
            // The first frame after a quiet spell starts a new window.
            self.window_idle = false;
            self.window_start = Instant::now();
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
            // Nothing in this window: the numbers now say so, and need no more ticks.
            self.window_idle = !busy;
        }
        if !self.window_idle {
            ctx.request_repaint_after(Duration::from_secs(1).saturating_sub(elapsed));
        }
    }

    /// Starts the stream again with the current display and options.
    fn restart_stream(&self) {
        self.send(stream_options(self.max_kbps));
        self.send(ToAgent::StartStream {
            display: self.display,
            max_in_flight: 2,
            h264: true,
        });
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
                    self.restart_stream();
                }
            }
            let mut cap = self.max_kbps;
            egui::ComboBox::from_id_salt("bandwidth")
                .selected_text(bandwidth_label(cap))
                .show_ui(ui, |ui| {
                    for (k, label) in BANDWIDTHS {
                        ui.selectable_value(&mut cap, k, label);
                    }
                })
                .response
                .on_hover_text("Bandwidth the screen may use: for slow links");
            if cap != self.max_kbps {
                self.max_kbps = cap;
                self.restart_stream();
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
        let k = if self.fit {
            let avail = ui.available_size();
            (avail.x / natural.x).min(avail.y / natural.y).max(0.05)
        } else {
            1.0
        };
        let size = natural * k;
        let filter = if (k * ui.ctx().pixels_per_point() - 1.0).abs() < 1e-4 {
            egui::TextureOptions::NEAREST
        } else {
            egui::TextureOptions::LINEAR
        };
        if filter != self.filter {
            // The next frame uploads the screen again with the new sampling.
            self.filter = filter;
            ui.ctx().request_repaint();
        }
        let native = self.native && self.overlay_free;
        let resp = if native {
            // The presenter draws here; egui only keeps the place (and its input).
            let (rect, resp) = ui.allocate_exact_size(size, egui::Sense::click_and_drag());
            self.native_rect = Some(rect);
            resp
        } else {
            ui.add(egui::Image::new((tex.id(), size)).sense(egui::Sense::click_and_drag()))
        };
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
        if let (false, Some((x, y)), Some((img, (hx, hy)))) =
            (native, self.cursor, &self.cursor_shape)
        {
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
        // The picture starts on a whole pixel (the presenter rounds its place, egui snaps the
        // image): measure from there, or every pointer position is off by one where the layout
        // puts the rectangle at a fraction of a pixel.
        let ppp = ui.ctx().pixels_per_point();
        let origin = (resp.rect.min.to_vec2() * ppp).round() / ppp;
        // Scale before dividing: (500 / 720) × 720 is 499.99997 in f32, one pixel short.
        let to_remote = |p: egui::Pos2| -> (i32, i32) {
            let d = p - origin.to_pos2();
            (
                (d.x * natural.x / size.x).clamp(0.0, natural.x - 1.0) as i32,
                (d.y * natural.y / size.y).clamp(0.0, natural.y - 1.0) as i32,
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

impl Viewer {
    /// Shows the presenter's window where this frame laid out the screen, or hides it: when the
    /// screen is not shown, or a menu or tooltip of egui's lies over it (which would be beneath
    /// the child window); then egui draws the screen, from the next frame on.
    fn place_screen(&mut self, ctx: &egui::Context) {
        let overlay_free = ctx.memory(|m| {
            m.areas()
                .visible_layer_ids()
                .iter()
                .all(|l| l.order == egui::Order::Background)
        });
        if overlay_free != self.overlay_free {
            self.overlay_free = overlay_free;
            ctx.request_repaint();
        }
        if let Some(p) = &self.presenter {
            p.place(self.native_place(ctx));
        }
    }

    /// Where the presenter shows the screen now, in window pixels; `None`: egui draws it.
    fn native_place(&self, ctx: &egui::Context) -> Option<present::Place> {
        let ppp = ctx.pixels_per_point();
        let r = self
            .native_rect
            .filter(|_| self.native && self.overlay_free)?;
        Some(present::Place {
            x: (r.min.x * ppp).round() as i32,
            y: (r.min.y * ppp).round() as i32,
            w: (r.width() * ppp).round().max(1.0) as u32,
            h: (r.height() * ppp).round().max(1.0) as u32,
        })
    }
}

/// What the window uploads to the screen's texture this frame.
enum Upload {
    Nothing,
    Whole(egui::ColorImage),
    Parts(Vec<([usize; 2], egui::ColorImage)>),
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.native_rect = None;
        self.take_updates(&ctx);
        self.statistics(&ctx);
        self.keyboard(&ctx);
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
        // The remote screen covers the panel: no background to fill under it (a whole-window
        // rectangle per frame for a software renderer).
        let showing_screen = self.wrap_up.is_none() && self.ended.is_none();
        let panel = if showing_screen {
            egui::CentralPanel::default().frame(egui::Frame::NONE)
        } else {
            egui::CentralPanel::default()
        };
        panel.show(ui, |ui| {
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
        self.place_screen(&ctx);
        // Frames, the pointer and the session's end wake the window (the decoder thread), local
        // input wakes it by itself; the statistics tick only while frames arrive.
        // The notes form is ordinary egui (focus moves over frames): it gets the steady tick the
        // whole window once had (only while the form is up).
        if self.wrap_up.is_some() || self.ended.is_some() {
            ctx.request_repaint_after(Duration::from_millis(8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::session::{Compression, EncodedRect, FrameUpdate};
    use tether_protocol::tiles::Rect;

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
            None,
        );
        (v, from_agent_tx, to_agent_rx)
    }

    /// What the decoder thread and the window do for the messages waiting, on this thread: the
    /// decoder's code applies them, then the window takes what it published.
    fn pump(v: &mut Viewer, ctx: &egui::Context) {
        let (decoder, rx) = v.pending.as_mut().expect("no decoder thread in tests");
        while let Ok(msg) = rx.try_recv() {
            decoder.handle(msg);
        }
        v.take_updates(ctx);
    }

    fn fb_len(v: &Viewer) -> usize {
        v.pending.as_ref().map_or(0, |(d, _)| d.fb.len())
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
        let ctx = egui::Context::default();
        for (w, h) in [
            (65_535, 65_535),
            (u32::MAX, u32::MAX),
            (8193, 10),
            (10, 8193),
        ] {
            let (mut v, tx, mut rx) = viewer();
            tx.try_send(frame(w, h)).unwrap();
            pump(&mut v, &ctx);
            assert_eq!(fb_len(&v), 0, "{w}x{h} allocated a framebuffer");
            assert!(
                lock(&v.shared).pixels.is_empty(),
                "{w}x{h} allocated pixels"
            );
            assert!(v.texture.is_none());
            let ended = v.ended.clone().unwrap_or_default();
            assert!(ended.contains("at most 8192x8192"), "{w}x{h}: {ended:?}");
            // Refused, not acknowledged.
            let sent: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
            assert!(!sent.iter().any(|m| matches!(m, ToAgent::FrameAck { .. })));
        }
        let (mut v, tx, _rx) = viewer();
        tx.try_send(frame(1920, 1080)).unwrap();
        pump(&mut v, &ctx);
        assert_eq!(fb_len(&v), 1920 * 1080 * 4);
        assert_eq!(v.texture.as_ref().map(|t| t.size()), Some([1920, 1080]));
        assert!(v.ended.is_none());
    }

    fn tile(rect: Rect, bgrx: [u8; 4], compression: Compression) -> EncodedRect {
        let raw: Vec<u8> = bgrx
            .iter()
            .copied()
            .cycle()
            .take((rect.w * rect.h * 4) as usize)
            .collect();
        let data = match compression {
            Compression::None => raw,
            _ => zstd::bulk::compress(&raw, 1).unwrap(),
        };
        EncodedRect {
            rect,
            compression,
            data,
        }
    }

    /// Frames are decoded and acknowledged by the decoder; the window uploads the whole screen
    /// first, then only the rectangles that changed, with the pixels the XOR deltas make.
    #[test]
    fn frames_are_acknowledged_and_only_changed_rectangles_uploaded() {
        let ctx = egui::Context::default();
        let (mut v, tx, mut rx) = viewer();
        let whole = Rect {
            x: 0,
            y: 0,
            w: 128,
            h: 64,
        };
        let part = Rect {
            x: 64,
            y: 0,
            w: 64,
            h: 64,
        };
        let mut f = FrameUpdate {
            seq: 7,
            display: 0,
            width: 128,
            height: 64,
            rects: vec![tile(whole, [10, 20, 30, 0], Compression::Zstd)],
            encode_us: 1500,
        };
        tx.try_send(ToViewer::Frame(f.clone())).unwrap();
        pump(&mut v, &ctx);
        let sent: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(sent.contains(&ToAgent::FrameAck { seq: 7 }), "{sent:?}");
        assert_eq!(v.texture.as_ref().map(|t| t.size()), Some([128, 64]));
        assert_eq!(lock(&v.shared).damage, Damage::None);
        assert_eq!(v.window_frames, 1);
        // BGRX in, RGBA out.
        assert_eq!(
            lock(&v.shared).pixels[0],
            egui::Color32::from_rgb(30, 20, 10)
        );

        // An XOR delta on the right half: only that rectangle is published as changed.
        f.seq = 8;
        f.rects = vec![tile(part, [1, 1, 1, 0], Compression::ZstdXor)];
        tx.try_send(ToViewer::Frame(f)).unwrap();
        let (decoder, from_agent) = v.pending.as_mut().unwrap();
        decoder.handle(from_agent.try_recv().unwrap());
        assert_eq!(lock(&v.shared).damage, Damage::Regions(vec![part]));
        {
            let s = lock(&v.shared);
            assert_eq!(s.pixels[0], egui::Color32::from_rgb(30, 20, 10));
            assert_eq!(s.pixels[64], egui::Color32::from_rgb(31, 21, 11));
            assert_eq!(
                s.pixels[127 + 63 * 128],
                egui::Color32::from_rgb(31, 21, 11)
            );
        }
        assert_eq!(rx.try_recv().ok(), Some(ToAgent::FrameAck { seq: 8 }));
        v.take_updates(&ctx);
        assert_eq!(lock(&v.shared).damage, Damage::None);
        assert_eq!(v.texture.as_ref().map(|t| t.size()), Some([128, 64]));
        assert_eq!(v.window_frames, 2);
        assert_eq!(v.window_encode_us, 3000);
    }

    /// A menu or tooltip over the screen would lie beneath the presenter's child window: while
    /// one is shown, egui draws the screen; once it has gone, the presenter again.
    #[test]
    fn egui_draws_the_screen_while_a_menu_lies_over_it() {
        let ctx = egui::Context::default();
        let (mut v, tx, _rx) = viewer();
        v.native = true;
        let whole = Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 32,
        };
        let mut f = match frame(64, 32) {
            ToViewer::Frame(f) => f,
            _ => unreachable!(),
        };
        f.rects = vec![tile(whole, [1, 2, 3, 0], Compression::Zstd)];
        tx.try_send(ToViewer::Frame(f)).unwrap();
        pump(&mut v, &ctx);
        let mut eframe_frame = eframe::Frame::_new_kittest();
        let input = || egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(640.0, 400.0),
            )),
            ..Default::default()
        };
        let mut run = |v: &mut Viewer, menu: bool| {
            let mut out = ctx.run_ui(input(), |ui| {
                if menu {
                    egui::Area::new(egui::Id::unique("a menu"))
                        .order(egui::Order::Foreground)
                        .show(ui.ctx(), |ui| ui.label("Alt+F4"));
                }
                eframe::App::ui(v, ui, &mut eframe_frame);
            });
            out.textures_delta.clear();
            v.native_place(&ctx)
        };
        let place = run(&mut v, false).expect("no menu: the presenter draws");
        // Fitted to the 640-point-wide window, below the toolbar, keeping its shape.
        assert_eq!((place.w, place.h), (640, 320));
        assert!(place.y > 0);
        assert_eq!(run(&mut v, true), None);
        assert_eq!(run(&mut v, true), None);
        // The frame after the menu closed still saw it the frame before, and the next lays
        // the screen out for the presenter again (each change asks for the next frame).
        assert_eq!(run(&mut v, false), None);
        assert_eq!(run(&mut v, false), None);
        assert_eq!(run(&mut v, false), Some(place));
        // Without a presenter, egui always draws.
        v.native = false;
        assert_eq!(run(&mut v, false), None);
    }

    /// The pointer, clipboard text, errors and the agent's goodbye reach the window.
    #[test]
    fn pointer_and_session_messages_reach_the_window() {
        let ctx = egui::Context::default();
        let (mut v, tx, _rx) = viewer();
        tx.try_send(ToViewer::Cursor { x: 5, y: 6 }).unwrap();
        tx.try_send(ToViewer::CursorShape {
            width: 2,
            height: 1,
            hot_x: 1,
            hot_y: 0,
            rgba: vec![255; 8],
        })
        .unwrap();
        tx.try_send(ToViewer::Error {
            message: "no\u{202e}pe".into(),
        })
        .unwrap();
        pump(&mut v, &ctx);
        assert_eq!(v.cursor, Some((5, 6)));
        assert_eq!(
            v.cursor_shape.as_ref().map(|(i, h)| (i.size, *h)),
            Some(([2, 1], (1, 0)))
        );
        assert_eq!(v.status, "nope");
        tx.try_send(ToViewer::Bye {
            reason: "ended by the user".into(),
        })
        .unwrap();
        pump(&mut v, &ctx);
        assert_eq!(v.ended.as_deref(), Some("ended by the user"));
        assert!(v.wrap_up.is_some());
    }
}
