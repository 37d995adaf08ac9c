//! `tether screenshot`, `type`, `click` and `clipboard`: one action on a machine's desktop, each
//! in a session of its own (view, control or clipboard permission).

use super::{CmdError, Why, on_device};
use crate::outln;
use std::path::Path;
use tether_protocol::session::{Activity, InputEvent, Permissions};

/// `tether screenshot DEVICE -o FILE [--display N]`.
pub async fn screenshot(
    dir: &Path,
    device: &str,
    path: &Path,
    display: u32,
    why: &Why,
) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let shot = on_device(
        &creds,
        device,
        Permissions::VIEW,
        Activity::Screenshot,
        why,
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
pub async fn clipboard(
    dir: &Path,
    device: &str,
    set: Option<String>,
    why: &Why,
) -> Result<(), CmdError> {
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
        why,
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

/// `tether type` and `tether click`: opens a control session, sends one input event, closes.
pub async fn control(
    dir: &Path,
    device: &str,
    why: &Why,
    event: InputEvent,
) -> Result<(), CmdError> {
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
