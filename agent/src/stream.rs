//! Streaming a display to the viewer: a capture thread (scrap's capturer cannot move between
//! threads) grabs frames on request; the streamer diffs them in tiles, compresses the changed
//! rectangles and sends them while flow-control credit lasts, and sends the pointer position
//! separately.

use enigo::{Enigo, Mouse, Settings};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tether_protocol::session::{Compression, EncodedRect, FrameUpdate, ToViewer};
use tether_protocol::tiles::{FlowControl, changed_rects, extract, xor};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// How often the screen is polled for changes when nothing changed.
const POLL: Duration = Duration::from_millis(15);

struct Grab {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    cursor: Option<(i32, i32)>,
}

type GrabReply = oneshot::Sender<Result<Grab, String>>;

/// Owns the capturer for one display on its own thread.
fn capture_thread(display: u32, requests: std_mpsc::Receiver<GrabReply>) {
    let setup = || -> Result<scrap::Capturer, String> {
        let d = scrap::Display::all()
            .map_err(|e| format!("no X display: {e}"))?
            .into_iter()
            .nth(display as usize)
            .ok_or_else(|| format!("display {display} does not exist"))?;
        scrap::Capturer::new(d).map_err(|e| e.to_string())
    };
    let mut cap = match setup() {
        Ok(c) => c,
        Err(e) => {
            for r in requests {
                let _ = r.send(Err(e.clone()));
            }
            return;
        }
    };
    let enigo = Enigo::new(&Settings::default()).ok();
    for reply in requests {
        let (w, h) = (cap.width(), cap.height());
        let grabbed = loop {
            match cap.frame() {
                Ok(f) => {
                    let stride = f.len().checked_div(h).unwrap_or(0);
                    let row = w * 4;
                    let mut pixels = Vec::with_capacity(row * h);
                    for y in 0..h {
                        if let Some(r) = f.get(y * stride..y * stride + row) {
                            pixels.extend_from_slice(r);
                        }
                    }
                    break Ok(pixels);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => break Err(e.to_string()),
            }
        };
        let cursor = enigo.as_ref().and_then(|e| e.location().ok());
        let _ = reply.send(grabbed.map(|pixels| Grab {
            width: w as u32,
            height: h as u32,
            pixels,
            cursor,
        }));
    }
}

/// Streams `display` until `acks` closes. Frames go to `out`.
pub async fn run(
    display: u32,
    max_in_flight: u8,
    mut acks: mpsc::UnboundedReceiver<u64>,
    out: mpsc::Sender<ToViewer>,
) {
    let (req_tx, req_rx) = std_mpsc::channel::<GrabReply>();
    std::thread::Builder::new()
        .name(format!("capture-{display}"))
        .spawn(move || capture_thread(display, req_rx))
        .ok();
    let mut flow = FlowControl::new(u32::from(max_in_flight));
    let mut prev: Option<Vec<u8>> = None;
    let mut cursor: Option<(i32, i32)> = None;
    loop {
        // Take every acknowledgement that arrived.
        loop {
            match acks.try_recv() {
                Ok(seq) => flow.on_ack(seq),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if !flow.can_send() {
            // No credit: wait for an acknowledgement rather than queue stale frames.
            match acks.recv().await {
                Some(seq) => {
                    flow.on_ack(seq);
                    continue;
                }
                None => return,
            }
        }
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        if req_tx.send(tx).is_err() {
            return;
        }
        let grab = match rx.await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                warn!("capture failed: {e}");
                let _ = out.send(ToViewer::Error { message: e }).await;
                return;
            }
            Err(_) => return,
        };
        if grab.cursor.is_some() && grab.cursor != cursor {
            cursor = grab.cursor;
            if let Some((x, y)) = cursor
                && out.send(ToViewer::Cursor { x, y }).await.is_err()
            {
                return;
            }
        }
        let (w, h) = (grab.width, grab.height);
        let pixels = grab.pixels;
        let encoded = tokio::task::spawn_blocking(move || {
            let rects = changed_rects(prev.as_deref(), &pixels, w, h);
            // Against a previous frame of the same size, send XOR deltas (see Compression).
            let base = prev.as_deref().filter(|p| p.len() == pixels.len());
            let enc: Vec<EncodedRect> = rects
                .into_iter()
                .filter_map(|r| {
                    let raw = extract(&pixels, w, r);
                    let (input, compression) = match base {
                        Some(p) => (xor(&raw, &extract(p, w, r)), Compression::ZstdXor),
                        None => (raw, Compression::Zstd),
                    };
                    zstd::bulk::compress(&input, 1)
                        .ok()
                        .map(|data| EncodedRect {
                            rect: r,
                            compression,
                            data,
                        })
                })
                .collect();
            (enc, pixels)
        })
        .await;
        let Ok((rects, pixels)) = encoded else { return };
        prev = Some(pixels);
        if rects.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let seq = flow.on_send();
        let update = FrameUpdate {
            seq,
            display,
            width: w,
            height: h,
            encode_us: started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
            rects,
        };
        debug!(
            seq,
            rects = update.rects.len(),
            us = update.encode_us,
            "frame"
        );
        if out.send(ToViewer::Frame(update)).await.is_err() {
            return;
        }
    }
}
