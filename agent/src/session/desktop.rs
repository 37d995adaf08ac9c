//! The screen family of a session's messages: screenshots, the stream of a display and its
//! acknowledgements, input, keep-alives, and the clipboard.

use crate::input;
use crate::platform::Desktop;
use crate::screen;
use std::sync::Arc;
use tether_protocol::session::{ToAgent, ToViewer, stream_feature};
use tokio::sync::mpsc;

/// The screen side of a session: the desktop, the stream of one display, and the one input
/// connection (dropping it releases every held key).
pub(super) struct Screen {
    pub(super) desktop: Arc<dyn Desktop>,
    stream: Option<(mpsc::UnboundedSender<u64>, tokio::task::JoinHandle<()>)>,
    input: input::Input,
    /// What the viewer said it decodes ([`ToAgent::StreamOptions`]), for its next streams.
    options: crate::stream::Encodings,
}

impl Screen {
    pub(super) fn new(desktop: Arc<dyn Desktop>) -> Self {
        Screen {
            input: input::Input::spawn(desktop.clone()),
            desktop,
            stream: None,
            options: crate::stream::Encodings::default(),
        }
    }

    pub(super) fn stop_stream(&mut self) {
        if let Some((_, task)) = self.stream.take() {
            task.abort();
        }
    }
}

/// Screenshots, streaming (start, stop, acknowledgements), input and keep-alives.
pub(super) async fn screen_message(
    msg: ToAgent,
    screen: &mut Screen,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    match msg {
        ToAgent::FrameAck { seq } => {
            if let Some((acks, _)) = &screen.stream {
                let _ = acks.send(seq);
            }
            None
        }
        ToAgent::StreamOptions(features) => {
            // Untrusted: only the first few are looked at, and unknown ones are ignored.
            let has = |name: &str| features.iter().take(stream_feature::MAX).any(|f| f == name);
            screen.options.palette = crate::stream::Palettes {
                zstd: has(stream_feature::PALETTE),
                raw: has(stream_feature::RAW_PALETTE),
                compact: has(stream_feature::COMPACT),
            };
            screen.options.copy_rect = has(stream_feature::COPY_RECT);
            screen.options.move_rect = has(stream_feature::MOVE_RECT);
            screen.options.max_kbps =
                tether_protocol::pace::announced(features.iter().take(stream_feature::MAX));
            None
        }
        ToAgent::StartStream {
            display,
            max_in_flight,
            h264,
        } => {
            screen.stop_stream();
            let (acks, acks_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(crate::stream::run(
                screen.desktop.clone(),
                display,
                max_in_flight.clamp(1, 8),
                crate::stream::Encodings {
                    h264,
                    ..screen.options
                },
                acks_rx,
                out.clone(),
            ));
            screen.stream = Some((acks, task));
            None
        }
        ToAgent::StopStream => {
            screen.stop_stream();
            None
        }
        ToAgent::Screenshot { display } => Some(
            match tokio::task::spawn_blocking({
                let desktop = screen.desktop.clone();
                move || screen::screenshot(&mut *desktop.screen(), display)
            })
            .await
            {
                Ok(Ok(img)) => ToViewer::Screenshot(img),
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        ToAgent::KeepAlive => {
            screen.input.keep_alive();
            None
        }
        ToAgent::Input(ev) => Some(match screen.input.apply(ev).await {
            Ok(()) => ToViewer::Done,
            Err(e) => ToViewer::Error {
                message: e.to_string(),
            },
        }),
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// Reading and setting the desktop's clipboard.
pub(super) async fn clipboard_message(
    msg: ToAgent,
    desktop: &Arc<dyn Desktop>,
) -> Option<ToViewer> {
    let desktop = desktop.clone();
    match msg {
        ToAgent::GetClipboard => Some(
            match tokio::task::spawn_blocking(move || desktop.clipboard().get()).await {
                Ok(Ok(text)) => ToViewer::Clipboard {
                    text: truncate(text, tether_protocol::session::MAX_CLIPBOARD),
                },
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        ToAgent::SetClipboard { text } => Some(
            match tokio::task::spawn_blocking(move || desktop.clipboard().set(text)).await {
                Ok(Ok(())) => ToViewer::Done,
                Ok(Err(e)) => ToViewer::Error {
                    message: e.to_string(),
                },
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
        ),
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
