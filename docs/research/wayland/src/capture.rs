//! PipeWire consumer for a mutter ScreenCast node: SHM (MemFd/MemPtr) BGRx/BGRA frames,
//! damage and cursor metadata. Runs a PipeWire main loop on its own thread.

use pipewire as pw;
use pw::spa;
use spa::buffer::meta::{MetaCursor, MetaVideoDamage};
use spa::param::video::{VideoFormat, VideoInfoRaw};
use spa::pod::{ChoiceValue, Object, Pod, Property, Value};
use spa::utils::{Choice, ChoiceEnum, ChoiceFlags, Fraction, Id, Rectangle, SpaTypes};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone)]
pub struct Cursor {
    pub id: u32,
    pub x: i32,
    pub y: i32,
    pub hot_x: i32,
    pub hot_y: i32,
    /// (w, h, format, BGRA/RGBA bytes) when the cursor image changed
    pub bitmap: Option<(u32, u32, u32, usize)>,
}

pub enum Event {
    Format { format: u32, w: u32, h: u32, framerate: (u32, u32), max_framerate: (u32, u32) },
    Frame(Frame),
    /// buffer without picture data (chunk size 0): cursor-only update
    MetaOnly { damage: Option<Vec<Rect>>, cursor: Option<Cursor>, t: Instant },
    State(String),
}

pub struct Frame {
    pub t: Instant,
    pub w: u32,
    pub h: u32,
    /// tightly packed, 4 bytes per pixel in `format` order (BGRx/BGRA)
    pub data: Vec<u8>,
    pub format: u32,
    pub data_type: u32,
    pub damage: Option<Vec<Rect>>,
    pub cursor: Option<Cursor>,
    pub seq: u64,
}

struct State {
    info: VideoInfoRaw,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    seq: u64,
    /// copy pixels of every frame (false = only meta, for CPU measurements of the bare stream)
    copy: bool,
}

fn pod_bytes(obj: Object) -> Vec<u8> {
    spa::pod::serialize::PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &Value::Object(obj))
        .expect("serialize pod")
        .0
        .into_inner()
}

/// EnumFormat: video/raw, BGRx or BGRA (also RGBx/RGBA), any size, any framerate.
/// No VideoModifier property => mutter offers SHM only (it has no GPU here anyway).
fn enum_format() -> Vec<u8> {
    let obj = spa::pod::object!(
        SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(spa::param::format::FormatProperties::MediaType, Id, spa::param::format::MediaType::Video),
        spa::pod::property!(spa::param::format::FormatProperties::MediaSubtype, Id, spa::param::format::MediaSubtype::Raw),
        spa::pod::property!(
            spa::param::format::FormatProperties::VideoFormat,
            Choice, Enum, Id,
            VideoFormat::BGRx, VideoFormat::BGRx, VideoFormat::BGRA, VideoFormat::RGBx, VideoFormat::RGBA
        ),
        spa::pod::property!(
            spa::param::format::FormatProperties::VideoSize,
            Choice, Range, Rectangle,
            Rectangle { width: 1280, height: 720 },
            Rectangle { width: 1, height: 1 },
            Rectangle { width: 8192, height: 8192 }
        ),
        spa::pod::property!(
            spa::param::format::FormatProperties::VideoFramerate,
            Choice, Range, Fraction,
            Fraction { num: 0, denom: 1 },
            Fraction { num: 0, denom: 1 },
            Fraction { num: 1000, denom: 1 }
        ),
    );
    pod_bytes(obj)
}

fn meta_param(meta_type: u32, size_default: i32, size_min: i32, size_max: i32) -> Vec<u8> {
    pod_bytes(Object {
        type_: spa::sys::SPA_TYPE_OBJECT_ParamMeta,
        id: spa::sys::SPA_PARAM_Meta,
        properties: vec![
            Property::new(spa::sys::SPA_PARAM_META_type, Value::Id(Id(meta_type))),
            Property::new(
                spa::sys::SPA_PARAM_META_size,
                Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Range { default: size_default, min: size_min, max: size_max },
                ))),
            ),
        ],
    })
}

fn buffers_param(w: u32, h: u32) -> Vec<u8> {
    let stride = (w * 4) as i32;
    let types = (1i32 << spa::sys::SPA_DATA_MemFd) | (1i32 << spa::sys::SPA_DATA_MemPtr);
    pod_bytes(Object {
        type_: spa::sys::SPA_TYPE_OBJECT_ParamBuffers,
        id: spa::sys::SPA_PARAM_Buffers,
        properties: vec![
            Property::new(
                spa::sys::SPA_PARAM_BUFFERS_buffers,
                Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Range { default: 8, min: 2, max: 16 },
                ))),
            ),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_blocks, Value::Int(1)),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_size, Value::Int(stride * h as i32)),
            Property::new(spa::sys::SPA_PARAM_BUFFERS_stride, Value::Int(stride)),
            Property::new(
                spa::sys::SPA_PARAM_BUFFERS_dataType,
                Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Flags { default: types, flags: vec![types] },
                ))),
            ),
        ],
    })
}

fn cursor_meta_size(w: i32, h: i32) -> i32 {
    (std::mem::size_of::<spa::sys::spa_meta_cursor>() + std::mem::size_of::<spa::sys::spa_meta_bitmap>()) as i32
        + w * h * 4
}

fn read_metas(buffer: &pw::buffer::Buffer<'_>) -> (Option<Vec<Rect>>, Option<Cursor>) {
    let damage = buffer.find_meta::<MetaVideoDamage>().map(|d| {
        d.iter()
            .map(|r| {
                let p = r.position();
                let s = r.size();
                Rect { x: p.x, y: p.y, w: s.width, h: s.height }
            })
            .collect::<Vec<_>>()
    });
    let cursor = buffer.find_meta::<MetaCursor>().filter(|c| c.is_valid()).map(|c| {
        let bitmap = c.bitmap().filter(|b| b.is_valid()).map(|b| {
            let s = b.size();
            (s.width, s.height, b.format().as_raw(), b.bitmap_data().map(|d| d.len()).unwrap_or(0))
        });
        Cursor {
            id: c.id(),
            x: c.position().x,
            y: c.position().y,
            hot_x: c.hotspot().x,
            hot_y: c.hotspot().y,
            bitmap,
        }
    });
    (damage, cursor)
}

/// Blocking: runs the PipeWire loop until `quit` receives ().
pub fn run(
    node_id: u32,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    quit: pw::channel::Receiver<()>,
    copy: bool,
) -> anyhow::Result<()> {
    pw::init();
    let mainloop = pw::main_loop::MainLoopRc::new(None)?;
    let context = pw::context::ContextRc::new(&mainloop, None)?;
    // mutter's own API: the default PipeWire socket ($XDG_RUNTIME_DIR/pipewire-0).
    // (The portal instead hands out an fd: context.connect_fd_rc(fd, None).)
    let core = context.connect_rc(None)?;
    let stream = pw::stream::StreamBox::new(
        &core,
        "tether-screen",
        pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Screen",
        },
    )?;

    let state = State { info: VideoInfoRaw::default(), tx: tx.clone(), seq: 0, copy };
    let _listener = stream
        .add_local_listener_with_user_data(state)
        .state_changed(|_, st, old, new| {
            let _ = st.tx.send(Event::State(format!("{old:?} -> {new:?}")));
        })
        .param_changed(|stream, st, id, param| {
            let Some(param) = param else { return };
            if id != spa::param::ParamType::Format.as_raw() {
                return;
            }
            if st.info.parse(param).is_err() {
                return;
            }
            let (w, h) = (st.info.size().width, st.info.size().height);
            let fr = st.info.framerate();
            let mfr = st.info.max_framerate();
            let _ = st.tx.send(Event::Format {
                format: st.info.format().as_raw(),
                w,
                h,
                framerate: (fr.num, fr.denom),
                max_framerate: (mfr.num, mfr.denom),
            });
            // Answer with Buffers (SHM only) + the metadata we want.
            let region = std::mem::size_of::<spa::sys::spa_meta_region>() as i32;
            let p_buf = buffers_param(w, h);
            let p_hdr = meta_param(
                spa::sys::SPA_META_Header,
                std::mem::size_of::<spa::sys::spa_meta_header>() as i32,
                std::mem::size_of::<spa::sys::spa_meta_header>() as i32,
                std::mem::size_of::<spa::sys::spa_meta_header>() as i32,
            );
            let p_dmg = meta_param(spa::sys::SPA_META_VideoDamage, region * 16, region, region * 16);
            let p_cur = meta_param(
                spa::sys::SPA_META_Cursor,
                cursor_meta_size(64, 64),
                cursor_meta_size(1, 1),
                cursor_meta_size(384, 384),
            );
            let mut params = [
                Pod::from_bytes(&p_buf).unwrap(),
                Pod::from_bytes(&p_hdr).unwrap(),
                Pod::from_bytes(&p_dmg).unwrap(),
                Pod::from_bytes(&p_cur).unwrap(),
            ];
            if let Err(e) = stream.update_params(&mut params) {
                let _ = st.tx.send(Event::State(format!("update_params failed: {e}")));
            }
        })
        .process(|stream, st| {
            // Drain to the newest buffer (mutter may have queued several).
            let mut newest = None;
            while let Some(b) = stream.dequeue_buffer() {
                newest = Some(b);
            }
            let Some(mut buffer) = newest else { return };
            let t = Instant::now();
            let (damage, cursor) = read_metas(&buffer);
            let (w, h) = (st.info.size().width, st.info.size().height);
            let format = st.info.format().as_raw();
            let datas = buffer.datas_mut();
            if datas.is_empty() {
                return;
            }
            let d = &mut datas[0];
            let data_type = d.type_().as_raw();
            let chunk = d.chunk();
            let (size, offset, stride) = (chunk.size() as usize, chunk.offset() as usize, chunk.stride());
            if size == 0 {
                let _ = st.tx.send(Event::MetaOnly { damage, cursor, t });
                return;
            }
            let stride = if stride > 0 { stride as usize } else { size / h.max(1) as usize };
            let mut out = Vec::new();
            if st.copy {
                let Some(src) = d.data() else {
                    let _ = st.tx.send(Event::State("buffer not mapped".into()));
                    return;
                };
                let row = w as usize * 4;
                out.reserve_exact(row * h as usize);
                for y in 0..h as usize {
                    let s = offset + y * stride;
                    if s + row > src.len() {
                        break;
                    }
                    out.extend_from_slice(&src[s..s + row]);
                }
            }
            st.seq += 1;
            let _ = st.tx.send(Event::Frame(Frame { t, w, h, data: out, format, data_type, damage, cursor, seq: st.seq }));
        })
        .register()?;

    let fmt = enum_format();
    let mut params = [Pod::from_bytes(&fmt).unwrap()];
    stream.connect(
        spa::utils::Direction::Input,
        Some(node_id),
        pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
        &mut params,
    )?;

    let ml = mainloop.clone();
    let _q = quit.attach(mainloop.loop_(), move |_| ml.quit());
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}

pub fn format_name(f: u32) -> &'static str {
    match f {
        x if x == VideoFormat::BGRx.as_raw() => "BGRx",
        x if x == VideoFormat::BGRA.as_raw() => "BGRA",
        x if x == VideoFormat::RGBx.as_raw() => "RGBx",
        x if x == VideoFormat::RGBA.as_raw() => "RGBA",
        _ => "other",
    }
}

pub fn is_bgr(f: u32) -> bool {
    f == VideoFormat::BGRx.as_raw() || f == VideoFormat::BGRA.as_raw()
}
