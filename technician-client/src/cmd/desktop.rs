//! `tether screenshot`, `type`, `click` and `clipboard`: one action on a machine's desktop, each
//! in a session of its own (view, control or clipboard permission).

use super::{CmdError, Why, WhyArgs, on_device};
use crate::outln;
use std::path::{Path, PathBuf};
use tether_protocol::session::{Activity, InputEvent, MouseButton, Permissions};

/// Save a screenshot of a machine's screen (view permission, end-to-end encrypted).
#[derive(clap::Args)]
pub struct ScreenshotArgs {
    pub device: String,
    /// PNG file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Display index (see the session's display list).
    #[arg(long, default_value_t = 0)]
    pub display: u32,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// Type text on a machine (control permission). Unicode is typed as is; \n presses Return.
#[derive(clap::Args)]
pub struct TypeArgs {
    pub device: String,
    pub text: String,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// Read a machine's clipboard text, or set it with --set (clipboard permission).
#[derive(clap::Args)]
pub struct ClipboardArgs {
    pub device: String,
    /// Put this text on the machine's clipboard instead of reading it.
    #[arg(long, value_name = "TEXT")]
    pub set: Option<String>,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// Click at a screen position on a machine (control permission).
#[derive(clap::Args)]
pub struct ClickArgs {
    pub device: String,
    pub x: i32,
    pub y: i32,
    #[arg(long, default_value = "left", value_parser = ["left", "middle", "right"])]
    pub button: String,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// `tether screenshot DEVICE -o FILE [--display N]`.
pub async fn screenshot(dir: &Path, a: ScreenshotArgs) -> Result<(), CmdError> {
    let (device, path, display) = (a.device.as_str(), a.output.as_path(), a.display);
    let why: Why = a.why.into();
    let creds = super::credentials(dir)?;
    let shot = on_device(
        &creds,
        device,
        Permissions::VIEW,
        Activity::Screenshot,
        &why,
        async |remote| remote.screenshot(display).await,
    )
    .await?;
    shot.write_png(path).map_err(|source| CmdError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    outln!(
        "{}x{} screenshot saved to {}",
        shot.width,
        shot.height,
        path.display()
    );
    Ok(())
}

/// `tether clipboard DEVICE [--set TEXT]`: prints the machine's clipboard text, or sets it.
pub async fn clipboard(dir: &Path, a: ClipboardArgs) -> Result<(), CmdError> {
    let (device, set) = (a.device.as_str(), a.set);
    let why: Why = a.why.into();
    let creds = super::credentials(dir)?;
    let perms = Permissions {
        clipboard: true,
        ..Permissions::VIEW
    };
    let text = on_device(
        &creds,
        device,
        perms,
        Activity::Clipboard,
        &why,
        async |remote| match set {
            Some(text) => remote.set_clipboard(text).await.map(|()| None),
            None => remote.get_clipboard().await.map(Some),
        },
    )
    .await?;
    if let Some(text) = text {
        // Remote text: only text, newlines and tabs (no escapes, CR or bidi overrides).
        let mut f = crate::safe::TerminalFilter::default();
        let mut shown = f.push(text.as_bytes());
        shown.extend(f.finish());
        outln!("{}", String::from_utf8_lossy(&shown));
    }
    Ok(())
}

/// `tether type DEVICE TEXT`.
pub async fn type_text(dir: &Path, a: TypeArgs) -> Result<(), CmdError> {
    let event = InputEvent::Text(a.text);
    control(dir, &a.device, &a.why.into(), event).await
}

/// `tether click DEVICE X Y [--button B]`.
pub async fn click(dir: &Path, a: ClickArgs) -> Result<(), CmdError> {
    let button = match a.button.as_str() {
        "middle" => MouseButton::Middle,
        "right" => MouseButton::Right,
        _ => MouseButton::Left,
    };
    let event = InputEvent::Click {
        x: a.x,
        y: a.y,
        button,
    };
    control(dir, &a.device, &a.why.into(), event).await
}

/// `tether type` and `tether click`: opens a control session, sends one input event, closes.
async fn control(dir: &Path, device: &str, why: &Why, event: InputEvent) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    on_device(
        &creds,
        device,
        Permissions::CONTROL,
        Activity::Input,
        why,
        async |remote| remote.input(event).await,
    )
    .await
}
