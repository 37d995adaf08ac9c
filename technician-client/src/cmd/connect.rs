//! `tether connect`: see and control a machine's desktop in a viewer window. The window owns
//! the main thread; the network runs on a runtime of its own.

use super::{CmdError, Why, WhyArgs};
use crate::relay::{RequestError, Session};
use tether_net::client::Credentials;
use tether_protocol::keys::KeyMode;
use tether_protocol::session::{Activity, Permissions};

/// See and control a machine's desktop in a viewer window (end-to-end encrypted).
#[derive(clap::Args)]
pub struct ConnectArgs {
    pub device: String,
    /// Only watch: the agent refuses all input.
    #[arg(long)]
    pub view_only: bool,
    /// Start at 1:1 instead of scaled to fit the window.
    #[arg(long)]
    pub actual_size: bool,
    /// How keys are typed: `translate` (the characters of your layout arrive) or
    /// `physical` (the same keys are pressed; the remote layout decides). The toolbar
    /// switches it too.
    #[arg(long, value_enum, default_value_t = KeysArg::Translate)]
    pub keys: KeysArg,
    /// Also ask now for running commands: the user approves once, and `tether exec` and
    /// `tether shell` for the same ticket then start without another prompt.
    #[arg(long)]
    pub shell: bool,
    /// Also ask now for copying files (then `push`/`pull` for the ticket need no prompt).
    #[arg(long)]
    pub files: bool,
    /// Cap the screen's bandwidth (kilobits per second, 64 to 1000000) for a slow link: the
    /// agent paces its updates and lowers its video bitrate to fit. The toolbar changes it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(64..=1_000_000))]
    pub max_kbps: Option<u32>,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// How `tether connect` types keys.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KeysArg {
    Translate,
    Physical,
}

/// `tether connect DEVICE`: runs on the main thread (the viewer window must own it).
pub fn run(dir: &std::path::Path, a: ConnectArgs) -> Result<(), CmdError> {
    let also = Permissions {
        shell: a.shell,
        files: a.files,
        ..Permissions::default()
    };
    let keys = match a.keys {
        KeysArg::Translate => KeyMode::Translate,
        KeysArg::Physical => KeyMode::Physical,
    };
    let why = a.why.into();
    let view = View {
        actual_size: a.actual_size,
        max_kbps: a.max_kbps,
    };
    connect(dir, &a.device, a.view_only, view, keys, also, &why)
}

/// How the viewer shows the screen.
#[derive(Clone, Copy)]
struct View {
    actual_size: bool,
    max_kbps: Option<u32>,
}

/// Asks the user at `device` for a session (`view_only`, or control, plus `also`), shows it in a
/// window until it is closed, then saves any notes typed in the viewer on the session.
fn connect(
    dir: &std::path::Path,
    device: &str,
    view_only: bool,
    view: View,
    keys: KeyMode,
    also: Permissions,
    why: &Why,
) -> Result<(), CmdError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let creds = super::credentials(dir)?;
    let permissions = if view_only {
        Permissions::VIEW
    } else {
        Permissions::FULL
    }
    .union(also);
    let notes = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let opened = rt.block_on(async {
        tokio::select! {
            r = open_viewer(&creds, device, permissions, view_only, view, why, &notes) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    let Some((session, viewer, session_id)) = opened? else {
        // As above: let the close reach the relay.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(50)).await });
        return Err(CmdError::Cancelled);
    };
    let (viewer, title, w, h) = viewer;
    let viewer = viewer.key_mode(keys);
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title(title.clone())
            .with_inner_size([w as f32, h as f32 + 40.0]),
        // The remote's pixels are shown as they are: no dither noise over them (and no
        // per-pixel shader work on every repaint, which software renderers feel).
        dithering: false,
        // Ctrl+C/X/V are the remote's keys: egui would otherwise turn them into its own
        // clipboard events, and swallow Ctrl+V entirely when this computer's clipboard holds
        // no text (this build of egui has no clipboard at all). Moving text between the two
        // clipboards is the toolbar's Paste to remote / Copy from remote.
        clipboard_shortcuts: false,
        ..Default::default()
    };
    let shown = eframe::run_native(
        &title,
        options,
        Box::new(|cc| {
            Ok(Box::new(
                viewer.present_in(cc).wake_on_messages(cc.egui_ctx.clone()),
            ))
        }),
    );
    let notes = notes.lock().ok().and_then(|mut n| n.take());
    if let Some(text) = notes {
        match rt.block_on(session.add_notes(&session_id, &text)) {
            Ok(()) => eprintln!("notes saved on session {session_id}"),
            Err(e) => eprintln!(
                "warning: notes not saved ({}); add them with: tether notes {session_id} TEXT",
                crate::safe::error_line(&e)
            ),
        }
    }
    rt.block_on(session.close());
    shown.map_err(|e| CmdError::Viewer(e.to_string()))
}

type Opened = (Session, (crate::viewer::Viewer, String, u32, u32), String);

/// Asks for the session (the user approves it meanwhile) and prepares the viewer.
async fn open_viewer(
    creds: &Credentials,
    device: &str,
    permissions: Permissions,
    view_only: bool,
    view: View,
    why: &Why,
    notes: &std::sync::Arc<std::sync::Mutex<Option<String>>>,
) -> Result<Opened, RequestError> {
    let line = format!("asking the user at {device} to approve the session…");
    let session = Session::open(creds)
        .await?
        .on_asking(move || eprintln!("{line}"));
    let remote = session
        .open_remote_as(
            creds,
            device,
            permissions,
            Activity::Screen,
            &why.reason,
            &why.ticket,
        )
        .await?;
    let title = format!(
        "Tether: {} ({})",
        tether_protocol::text::clean(&remote.hostname, 64),
        if view_only { "view only" } else { "control" }
    );
    let (w, h) = remote
        .displays
        .first()
        .map(|d| (d.width, d.height))
        .unwrap_or((1280, 800));
    let displays = remote.displays.clone();
    let perms = remote.permissions;
    let session_id = remote.session_id.clone();
    eprintln!("session {session_id} started");
    let (tx, rx) = remote.into_duplex();
    Ok((
        session,
        (
            crate::viewer::Viewer::new(tx, rx, title.clone(), displays, perms, view.max_kbps)
                .fit(!view.actual_size)
                .notes_out(notes.clone()),
            title,
            w,
            h,
        ),
        session_id,
    ))
}
