//! Following the input desktop (FFI): while a UAC prompt or the sign-in screen shows, input
//! goes to another desktop (`Winlogon`) than the user's (`Default`), and a thread captures and
//! injects only on the desktop it is attached to. Attaching needs the rights to open that
//! desktop (a process running as SYSTEM in the session) and a thread without windows or hooks;
//! where either is missing, nothing changes.

#![allow(unsafe_code)]

use std::cell::RefCell;
use windows_sys::Win32::System::StationsAndDesktops::{
    CloseDesktop, DESKTOP_CREATEMENU, DESKTOP_CREATEWINDOW, DESKTOP_ENUMERATE, DESKTOP_HOOKCONTROL,
    DESKTOP_JOURNALPLAYBACK, DESKTOP_READOBJECTS, DESKTOP_SWITCHDESKTOP, DESKTOP_WRITEOBJECTS,
    GetThreadDesktop, GetUserObjectInformationW, HDESK, OpenInputDesktop, SetThreadDesktop,
    UOI_NAME,
};
use windows_sys::Win32::System::Threading::GetCurrentThreadId;

/// A desktop handle this module opened, closed on drop.
struct Desk(HDESK);

impl Drop for Desk {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from OpenInputDesktop and is closed once, when no thread of
        // ours is attached to it any more.
        unsafe {
            CloseDesktop(self.0);
        }
    }
}

// Clippy 1.96 asks for the `const` initialiser this already has (a false positive of its
// lint on the expanded macro with a source-built std).
#[allow(clippy::missing_const_for_thread_local)]
mod attached {
    use super::*;
    thread_local! {
    /// The desktop this thread was attached to by [`follow`], kept open while attached.
    pub(super) static ATTACHED: RefCell<Option<Desk>> = const { RefCell::new(None) };
    }
}
use attached::ATTACHED;

/// A desktop's name (`Default`, `Winlogon` …).
fn name(desk: HDESK) -> Option<Vec<u16>> {
    let mut buf = [0u16; 256];
    let mut needed = 0u32;
    // SAFETY: `buf` is writable for the length given; `needed` receives the size wanted.
    let ok = unsafe {
        GetUserObjectInformationW(
            desk,
            UOI_NAME,
            buf.as_mut_ptr() as *mut core::ffi::c_void,
            size_of_val(&buf) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return None;
    }
    let len = buf.iter().position(|&u| u == 0).unwrap_or(buf.len());
    Some(buf[..len].to_vec())
}

/// Attaches this thread to the desktop that receives input now, when it is another than the
/// thread's. Returns whether it switched.
pub fn follow() -> bool {
    let access = DESKTOP_READOBJECTS
        | DESKTOP_CREATEWINDOW
        | DESKTOP_CREATEMENU
        | DESKTOP_HOOKCONTROL
        | DESKTOP_JOURNALPLAYBACK
        | DESKTOP_ENUMERATE
        | DESKTOP_WRITEOBJECTS
        | DESKTOP_SWITCHDESKTOP;
    // SAFETY: plain call; the handle is owned by `Desk` from here on.
    let input = Desk(unsafe { OpenInputDesktop(0, 0, access) });
    if input.0.is_null() {
        return false;
    }
    // SAFETY: plain calls; the thread's desktop handle is not ours to close.
    let current = unsafe { GetThreadDesktop(GetCurrentThreadId()) };
    let wanted = name(input.0);
    if wanted.is_none() || wanted == name(current) {
        return false;
    }
    // SAFETY: `input.0` is an open desktop handle, kept open (in ATTACHED) while attached.
    if unsafe { SetThreadDesktop(input.0) } == 0 {
        tracing::debug!(
            "cannot attach to the input desktop: {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    tracing::info!(
        "attached to the input desktop {}",
        String::from_utf16_lossy(wanted.as_deref().unwrap_or_default())
    );
    // The desktop attached before, if ours, is closed now that no thread uses it.
    ATTACHED.with(|a| *a.borrow_mut() = Some(input));
    true
}
