//! A PipeWire video consumer: one screen-cast node (from mutter's ScreenCast or the portal) read
//! as shared-memory BGRx/BGRA (RGBx/RGBA converted) frames, with the damage and cursor metadata
//! the compositor attaches.
//!
//! PipeWire wants its own main loop, so each stream runs on a thread of its own; the newest
//! frame waits in a slot for [`PwStream::take`] (a slow reader gets the newest screen, never a
//! queue). Frames arrive only when the compositor repaints, so "no new frame" is "unchanged".

use crate::backend::{Capture, Frame};
use pipewire as pw;
use pw::spa;
use spa::buffer::meta::{MetaCursor, MetaVideoDamage};
use spa::param::video::{VideoFormat, VideoInfoRaw};
use spa::pod::{ChoiceValue, Object, Pod, Property, Value};
use spa::utils::{Choice, ChoiceEnum, ChoiceFlags, Fraction, Id, Rectangle, SpaTypes};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tether_protocol::helper::{HelperError, MAX_SIDE, PointerBitmap, PointerState};
use tether_protocol::tiles::Rect;

/// What the PipeWire thread leaves for the reader.
#[derive(Default)]
struct Slot {
    /// The newest frame not yet taken.
    frame: Option<Frame>,
    cursor: Option<(i32, i32)>,
    cursor_image: Option<PointerBitmap>,
    /// The stream failed or ended.
    error: Option<String>,
    /// A frame was ever taken (before it, "no frame" means "still waiting").
    started: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let mut g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

/// One stream; dropping it stops the thread and disconnects.
pub struct PwStream {
    shared: Arc<Shared>,
    quit: Option<pw::channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PwStream {
    /// Connects to `node_id` on the PipeWire remote `fd` (the portal's) or on the session's
    /// default socket (`None`: mutter's own API).
    pub fn start(node_id: u32, fd: Option<OwnedFd>) -> Result<PwStream, HelperError> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            ready: Condvar::new(),
        });
        let (quit_tx, quit_rx) = pw::channel::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pipewire-{node_id}"))
            .spawn(move || {
                if let Err(e) = run(node_id, fd, s.clone(), quit_rx, &started_tx) {
                    let _ = started_tx.send(Err(e.clone()));
                    s.with(|slot| slot.error = Some(e));
                    s.ready.notify_all();
                }
            })
            .map_err(|e| HelperError::Capture(format!("cannot start the PipeWire thread: {e}")))?;
        match started_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(HelperError::Capture(format!("PipeWire: {e}"))),
            Err(_) => {
                return Err(HelperError::Capture(
                    "PipeWire did not answer within 10 s".into(),
                ));
            }
        }
        Ok(PwStream {
            shared,
            quit: Some(quit_tx),
            thread: Some(thread),
        })
    }

    /// The newest frame since the last call, waiting up to `first_wait` for the very first one.
    pub fn take(&self, first_wait: Duration) -> Result<Capture, HelperError> {
        let deadline = Instant::now() + first_wait;
        let mut g = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(f) = g.frame.take() {
                g.started = true;
                return Ok(Capture::Frame(f));
            }
            if let Some(e) = &g.error {
                return Err(HelperError::Capture(format!(
                    "the screen stream ended: {e}"
                )));
            }
            if g.started {
                return Ok(Capture::Unchanged);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HelperError::Capture(format!(
                    "no frame from the compositor within {} s",
                    first_wait.as_secs()
                )));
            }
            g = self
                .shared
                .ready
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The pointer as the stream's cursor metadata last said (the image once per change).
    pub fn pointer(&self) -> Option<PointerState> {
        self.shared.with(|s| {
            let (x, y) = s.cursor?;
            Some(PointerState {
                x,
                y,
                image: s.cursor_image.take(),
            })
        })
    }
}

impl Drop for PwStream {
    fn drop(&mut self) {
        if let Some(q) = self.quit.take() {
            let _ = q.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    info: VideoInfoRaw,
    shared: Arc<Shared>,
    have_format: bool,
}

fn pod_bytes(obj: Object) -> Result<Vec<u8>, String> {
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &Value::Object(obj),
    )
    .map(|(c, _)| c.into_inner())
    .map_err(|e| format!("building a PipeWire parameter: {e:?}"))
}

/// EnumFormat: raw video, BGRx/BGRA (RGBx/RGBA converted), any size, any frame rate. No
/// modifier property: shared memory only (the agent reads pixels on the CPU anyway).
fn enum_format() -> Result<Vec<u8>, String> {
    use spa::param::format::{FormatProperties, MediaSubtype, MediaType};
    let obj = spa::pod::object!(
        SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        spa::pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        spa::pod::property!(
            FormatProperties::VideoFormat,
            Choice,
            Enum,
            Id,
            VideoFormat::BGRx,
            VideoFormat::BGRx,
            VideoFormat::BGRA,
            VideoFormat::RGBx,
            VideoFormat::RGBA
        ),
        spa::pod::property!(
            FormatProperties::VideoSize,
            Choice,
            Range,
            Rectangle,
            Rectangle {
                width: 1280,
                height: 720
            },
            Rectangle {
                width: 1,
                height: 1
            },
            Rectangle {
                width: MAX_SIDE,
                height: MAX_SIDE
            }
        ),
        spa::pod::property!(
            FormatProperties::VideoFramerate,
            Choice,
            Range,
            Fraction,
            Fraction { num: 0, denom: 1 },
            Fraction { num: 0, denom: 1 },
            Fraction {
                num: 1000,
                denom: 1
            }
        ),
    );
    pod_bytes(obj)
}

fn int_range(default: i32, min: i32, max: i32) -> Value {
    Value::Choice(ChoiceValue::Int(Choice(
        ChoiceFlags::empty(),
        ChoiceEnum::Range { default, min, max },
    )))
}

fn meta_param(meta_type: u32, default: i32, min: i32, max: i32) -> Result<Vec<u8>, String> {
    pod_bytes(Object {
        type_: spa::sys::SPA_TYPE_OBJECT_ParamMeta,
        id: spa::sys::SPA_PARAM_Meta,
        properties: vec![
            Property::new(spa::sys::SPA_PARAM_META_type, Value::Id(Id(meta_type))),
            Property::new(spa::sys::SPA_PARAM_META_size, int_range(default, min, max)),
        ],
    })
}

fn buffers_param(w: u32, h: u32) -> Result<Vec<u8>, String> {
    let stride = i32::try_from(w * 4).map_err(|_| "frame too wide".to_string())?;
    let size = stride
        .checked_mul(i32::try_from(h).map_err(|_| "frame too tall".to_string())?)
        .ok_or("frame too large")?;
    let types = (1i32 << spa::sys::SPA_DATA_MemFd) | (1i32 << spa::sys::SPA_DATA_MemPtr);
    pod_bytes(Object {
        type_: spa::sys::SPA_TYPE_OBJECT_ParamBuffers,
        id: spa::sys::SPA_PARAM_Buffers,
        properties: vec![
            Property::new(spa::sys::SPA_PARAM_BUFFERS_buffers, int_range(8, 2, 16)),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_blocks, Value::Int(1)),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_size, Value::Int(size)),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_stride, Value::Int(stride)),
            Property::new(
                spa::sys::SPA_PARAM_BUFFERS_dataType,
                Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Flags {
                        default: types,
                        flags: vec![types],
                    },
                ))),
            ),
        ],
    })
}

fn cursor_meta_size(side: i32) -> i32 {
    let fixed = std::mem::size_of::<spa::sys::spa_meta_cursor>()
        + std::mem::size_of::<spa::sys::spa_meta_bitmap>();
    i32::try_from(fixed).unwrap_or(i32::MAX / 2) + side * side * 4
}

/// The params answering a negotiated format: shared-memory buffers, header, damage, cursor.
fn buffer_params(w: u32, h: u32) -> Result<Vec<Vec<u8>>, String> {
    let header = std::mem::size_of::<spa::sys::spa_meta_header>() as i32;
    let region = std::mem::size_of::<spa::sys::spa_meta_region>() as i32;
    Ok(vec![
        buffers_param(w, h)?,
        meta_param(spa::sys::SPA_META_Header, header, header, header)?,
        meta_param(
            spa::sys::SPA_META_VideoDamage,
            region * 16,
            region,
            region * 16,
        )?,
        meta_param(
            spa::sys::SPA_META_Cursor,
            cursor_meta_size(64),
            cursor_meta_size(1),
            cursor_meta_size(384),
        )?,
    ])
}

/// The damage a buffer carries, clipped to the frame; `None` when it carries none.
fn damage_of(buffer: &pw::buffer::Buffer<'_>, w: u32, h: u32) -> Option<Vec<Rect>> {
    let d = buffer.find_meta::<MetaVideoDamage>()?;
    let mut rects = Vec::new();
    for r in d.iter() {
        if !r.is_valid() {
            break;
        }
        let (p, s) = (r.position(), r.size());
        let rect = Rect {
            x: u32::try_from(p.x.max(0)).unwrap_or(0),
            y: u32::try_from(p.y.max(0)).unwrap_or(0),
            w: s.width,
            h: s.height,
        };
        if let Some(c) = tether_protocol::helper::clip(rect, w, h) {
            rects.push(c);
        }
    }
    // A buffer with the meta but no valid rectangle: the compositor did not track damage.
    (!rects.is_empty()).then_some(rects)
}

/// The cursor's position and, when present, its image as premultiplied RGBA.
fn cursor_of(buffer: &pw::buffer::Buffer<'_>) -> Option<((i32, i32), Option<PointerBitmap>)> {
    let c = buffer.find_meta::<MetaCursor>().filter(|c| c.is_valid())?;
    let pos = (c.position().x, c.position().y);
    let image = c.bitmap().and_then(|b| {
        let size = b.size();
        let (w, h) = (
            u16::try_from(size.width).ok()?,
            u16::try_from(size.height).ok()?,
        );
        let data = b.bitmap_data()?;
        let stride = usize::try_from(b.stride().unsigned_abs()).ok()?;
        let format = b.format();
        let swap = if format == VideoFormat::RGBA || format == VideoFormat::RGBx {
            false
        } else if format == VideoFormat::BGRA || format == VideoFormat::BGRx {
            true
        } else {
            return None;
        };
        let row = usize::from(w) * 4;
        let mut rgba = Vec::with_capacity(row * usize::from(h));
        for y in 0..usize::from(h) {
            let line = data.get(y * stride..y * stride + row)?;
            for px in line.chunks_exact(4) {
                let (r, g, b) = if swap {
                    (px[2], px[1], px[0])
                } else {
                    (px[0], px[1], px[2])
                };
                rgba.extend_from_slice(&[r, g, b, px[3]]);
            }
        }
        let hot = c.hotspot();
        let bitmap = PointerBitmap {
            width: w,
            height: h,
            hot_x: u16::try_from(hot.x.max(0)).unwrap_or(0).min(w),
            hot_y: u16::try_from(hot.y.max(0)).unwrap_or(0).min(h),
            rgba,
        };
        bitmap.is_valid().then_some(bitmap)
    });
    Some((pos, image))
}

/// Packed BGRX rows out of a mapped buffer honouring its stride and offset.
fn copy_rows(
    src: &[u8],
    offset: usize,
    stride: usize,
    w: u32,
    h: u32,
    rgb_order: bool,
) -> Option<Vec<u8>> {
    let row = w as usize * 4;
    let mut out = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = offset.checked_add(y.checked_mul(stride)?)?;
        out.extend_from_slice(src.get(start..start.checked_add(row)?)?);
    }
    if rgb_order {
        for px in out.chunks_exact_mut(4) {
            px.swap(0, 2);
        }
    }
    Some(out)
}

fn run(
    node_id: u32,
    fd: Option<OwnedFd>,
    shared: Arc<Shared>,
    quit: pw::channel::Receiver<()>,
    started: &std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    pw::init();
    let err = |what: &str, e: pw::Error| format!("{what}: {e}");
    let mainloop = pw::main_loop::MainLoopRc::new(None).map_err(|e| err("main loop", e))?;
    let context = pw::context::ContextRc::new(&mainloop, None).map_err(|e| err("context", e))?;
    let core = match fd {
        Some(fd) => context.connect_fd_rc(fd, None),
        None => context.connect_rc(None),
    }
    .map_err(|e| err("connecting to PipeWire", e))?;
    let stream = pw::stream::StreamBox::new(
        &core,
        "tether-screen",
        pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Screen",
        },
    )
    .map_err(|e| err("stream", e))?;
    let state = State {
        info: VideoInfoRaw::default(),
        shared: shared.clone(),
        have_format: false,
    };
    let _listener = stream
        .add_local_listener_with_user_data(state)
        .state_changed(|_, st, old, new| {
            tracing::debug!("PipeWire stream {old:?} → {new:?}");
            if let pw::stream::StreamState::Error(e) = new {
                st.shared.with(|s| s.error = Some(e));
                st.shared.ready.notify_all();
            } else if matches!(new, pw::stream::StreamState::Unconnected) {
                st.shared
                    .with(|s| s.error.get_or_insert_with(|| "disconnected".into()).len());
                st.shared.ready.notify_all();
            }
        })
        .param_changed(|stream, st, id, param| {
            let Some(param) = param else { return };
            if id != spa::param::ParamType::Format.as_raw() || st.info.parse(param).is_err() {
                return;
            }
            let (w, h) = (st.info.size().width, st.info.size().height);
            tracing::info!("screen stream: {:?} {w}×{h}", st.info.format());
            st.have_format = true;
            let bytes = match buffer_params(w, h) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("{e}");
                    return;
                }
            };
            let mut params: Vec<&Pod> = bytes.iter().filter_map(|b| Pod::from_bytes(b)).collect();
            if let Err(e) = stream.update_params(&mut params) {
                tracing::warn!("PipeWire buffer parameters refused: {e}");
            }
        })
        .process(|stream, st| {
            // Drain to the newest buffer: the compositor may have queued several.
            let mut newest = None;
            while let Some(b) = stream.dequeue_buffer() {
                newest = Some(b);
            }
            let Some(mut buffer) = newest else { return };
            if !st.have_format {
                return;
            }
            let (w, h) = (st.info.size().width, st.info.size().height);
            let format = st.info.format();
            let damage = damage_of(&buffer, w, h);
            let cursor = cursor_of(&buffer);
            if let Some((pos, image)) = cursor {
                st.shared.with(|s| {
                    s.cursor = Some(pos);
                    if image.is_some() {
                        s.cursor_image = image;
                    }
                });
            }
            let datas = buffer.datas_mut();
            let Some(d) = datas.first_mut() else { return };
            let chunk = d.chunk();
            let (size, offset, stride) = (
                chunk.size() as usize,
                chunk.offset() as usize,
                chunk.stride(),
            );
            if size == 0 {
                // Metadata only (the cursor moved).
                return;
            }
            let stride = if stride > 0 {
                stride as usize
            } else {
                size / h.max(1) as usize
            };
            let rgb = format == VideoFormat::RGBx || format == VideoFormat::RGBA;
            let Some(pixels) = d
                .data()
                .and_then(|src| copy_rows(src, offset, stride, w, h, rgb))
            else {
                tracing::warn!("a screen buffer was not mapped or too small; skipped");
                return;
            };
            st.shared.with(|s| {
                // Damage of a frame that replaces an untaken one adds to it.
                let damage = match (s.frame.take(), damage) {
                    (Some(prev), Some(mut d)) if prev.width == w && prev.height == h => {
                        match prev.damage {
                            Some(p) => {
                                d.extend(p);
                                Some(d)
                            }
                            None => None,
                        }
                    }
                    (Some(_), _) => None,
                    (None, d) => d,
                };
                s.frame = Some(Frame {
                    width: w,
                    height: h,
                    pixels,
                    damage,
                });
            });
            st.shared.ready.notify_all();
        })
        .register()
        .map_err(|e| err("stream listener", e))?;
    let fmt = enum_format()?;
    let mut params: Vec<&Pod> = Pod::from_bytes(&fmt).into_iter().collect();
    stream
        .connect(
            spa::utils::Direction::Input,
            Some(node_id),
            pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut params,
        )
        .map_err(|e| err("connecting the stream", e))?;
    let ml = mainloop.clone();
    let _q = quit.attach(mainloop.loop_(), move |_| ml.quit());
    let _ = started.send(Ok(()));
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_packed_and_bounded() {
        // 2×2, stride 12 (4 bytes of padding per row), offset 4.
        let mut src = vec![0u8; 4];
        src.extend([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
        src.extend([9, 10, 11, 12, 13, 14, 15, 16, 0, 0, 0, 0]);
        assert_eq!(
            copy_rows(&src, 4, 12, 2, 2, false),
            Some((1..=16).collect::<Vec<u8>>())
        );
        let swapped = copy_rows(&src, 4, 12, 2, 2, true).unwrap();
        assert_eq!(&swapped[..4], &[3, 2, 1, 4]);
        // A buffer shorter than its claimed size is refused, not read past.
        assert_eq!(copy_rows(&src, 4, 12, 2, 3, false), None);
        assert_eq!(copy_rows(&src, usize::MAX, 12, 2, 2, false), None);
    }
}
