//! What a Windows machine gives the service: the named pipe the tray and the terminal commands
//! reach the agent by (its client named by its process token), the state directory under
//! `%ProgramData%\Tether` (SYSTEM and Administrators only), commands in job objects, file
//! access that never follows a reparse point, failed services, host facts from the registry,
//! the inventory's sources (registry, WMI) and the interactive desktop (GDI, SendInput).
//!
//! Built here with mingw and tested under Wine (`deploy/build-windows.sh`, `tests/tests/windows_*`):
//! what Wine cannot show (session-0 isolation, DXGI, UAC) is listed in the README's Windows
//! section.

pub mod acl;
pub mod credentials;
pub mod desktop;
pub mod fs;
pub mod host;
pub mod inventory;
pub mod ipc;
pub mod paths;
pub mod process;
pub mod service;
pub mod session;
pub mod units;
pub mod users;

use super::{Desktop, PlatformError};
use std::sync::Arc;

/// The interactive desktop (screens through GDI, input through SendInput): this process's own
/// when it runs in the user's session, else (a service, in session 0) served by the desktop
/// helper started in the signed-in user's session ([`session`]).
pub fn desktop() -> Result<Arc<dyn Desktop>, PlatformError> {
    if session::needs_helper() {
        tracing::info!(
            session = ?session::own_session(),
            "the desktop is served by a helper in the signed-in user's session"
        );
        return Ok(Arc::new(super::helper::HelperDesktop::new(
            super::DesktopKind::Windows,
            None,
            Box::new(session::InUserSession),
        )));
    }
    Ok(Arc::new(desktop::WindowsDesktop::new()))
}

/// `tether-agent desktop-helper`: serves this session's desktop to the agent service on
/// standard input and output until the service closes them.
pub fn serve_desktop_helper() -> Result<(), tether_protocol::helper::serve::ServeError> {
    let desktop: Arc<dyn Desktop> = Arc::new(desktop::WindowsDesktop::new());
    let mut backend = super::helper::serve::DesktopBackend::new("windows", desktop);
    tether_protocol::helper::serve::serve(
        &mut backend,
        &mut std::io::stdin().lock(),
        &mut std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()),
    )
}

/// Whether this is Wine rather than Windows (Wine keeps its settings under `HKLM\Software\Wine`).
/// Only to step around Wine's gaps, never to change what is reported.
pub fn under_wine() -> bool {
    winreg::RegKey::predef(winreg::enums::HKEY_LOCAL_MACHINE)
        .open_subkey(r"Software\Wine")
        .is_ok()
}
