//! The input side of the Windows desktop (FFI): `SendInput` of keys and mouse events, and what
//! the keyboard layout and key state say.

#![allow(unsafe_code)]

use std::io;
use std::ptr;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{
    GetAsyncKeyState, GetKeyState, GetKeyboardLayout, HKL, INPUT, INPUT_0, INPUT_KEYBOARD,
    INPUT_MOUSE, KEYBDINPUT, KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP, KEYEVENTF_SCANCODE,
    KEYEVENTF_UNICODE, MAPVK_VK_TO_VSC, MAPVK_VSC_TO_VK_EX, MOUSEINPUT, MapVirtualKeyExW,
    SendInput, VkKeyScanExW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{GetForegroundWindow, GetWindowThreadProcessId};

/// One key going down or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stroke {
    /// A virtual key, with its scan code for the applications that read it.
    Vk { vk: u16, scan: u16, extended: bool },
    /// A scan code alone: the layout decides the virtual key (`KEYEVENTF_SCANCODE`; Wine 8
    /// ignores it, so presses resolve it first where the layout knows it, see `vk_for_scan`).
    Scan { scan: u16, extended: bool },
    /// A UTF-16 unit typed as is (`VK_PACKET`).
    Unicode(u16),
}

/// One mouse event: relative flags and data as `MOUSEINPUT` has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MouseEv {
    pub dx: i32,
    pub dy: i32,
    pub data: i32,
    pub flags: u32,
}

pub fn key_input(stroke: Stroke, up: bool) -> INPUT {
    let up = if up { KEYEVENTF_KEYUP } else { 0 };
    let ext = |e: bool| if e { KEYEVENTF_EXTENDEDKEY } else { 0 };
    let (vk, scan, flags) = match stroke {
        Stroke::Vk { vk, scan, extended } => (vk, scan, ext(extended)),
        Stroke::Scan { scan, extended } => (0, scan, KEYEVENTF_SCANCODE | ext(extended)),
        Stroke::Unicode(unit) => (0, unit, KEYEVENTF_UNICODE),
    };
    INPUT {
        r#type: INPUT_KEYBOARD,
        Anonymous: INPUT_0 {
            ki: KEYBDINPUT {
                wVk: vk,
                wScan: scan,
                dwFlags: flags | up,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

pub fn mouse_input(ev: MouseEv) -> INPUT {
    INPUT {
        r#type: INPUT_MOUSE,
        Anonymous: INPUT_0 {
            mi: MOUSEINPUT {
                dx: ev.dx,
                dy: ev.dy,
                mouseData: ev.data as u32,
                dwFlags: ev.flags,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

/// `SendInput` injected only the first `sent` events.
#[derive(Debug)]
pub struct Partial {
    pub sent: usize,
    pub error: io::Error,
}

/// Injects `inputs` in order, as one uninterrupted sequence.
pub fn send(inputs: &[INPUT]) -> Result<(), Partial> {
    if inputs.is_empty() {
        return Ok(());
    }
    // SAFETY: `inputs` is a live slice of initialised INPUT structures of the size given.
    let n = unsafe {
        SendInput(
            inputs.len() as u32,
            inputs.as_ptr(),
            size_of::<INPUT>() as i32,
        )
    };
    if n as usize != inputs.len() {
        // Blocked by UIPI (a higher-integrity window has the focus) or another desktop.
        return Err(Partial {
            sent: n as usize,
            error: io::Error::other(format!(
                "SendInput injected {n} of {} events: {}",
                inputs.len(),
                io::Error::last_os_error()
            )),
        });
    }
    Ok(())
}

/// The keyboard layout of the window that has the focus (where keys go), else this thread's.
pub fn layout() -> HKL {
    // SAFETY: no pointers but the optional process id, which is null.
    unsafe {
        let fg = GetForegroundWindow();
        let thread = if fg.is_null() {
            0
        } else {
            GetWindowThreadProcessId(fg, ptr::null_mut())
        };
        GetKeyboardLayout(thread)
    }
}

/// The virtual key and the shift state (bit 0 Shift, 1 Ctrl, 2 Alt) that type `unit` on
/// `layout`, if a key does.
pub fn vk_for_char(unit: u16, layout: HKL) -> Option<(u16, u8)> {
    // SAFETY: a plain lookup; `layout` is a layout handle (any value is accepted).
    let r = unsafe { VkKeyScanExW(unit, layout) };
    if r == -1 {
        return None;
    }
    let (vk, mods) = ((r as u16) & 0xff, ((r as u16) >> 8) as u8);
    (vk != 0 && vk != 0xff && mods != 0xff).then_some((vk, mods))
}

/// The scan code of `vk` on `layout` (0 when it has none).
pub fn scan_for_vk(vk: u16, layout: HKL) -> u16 {
    // SAFETY: a plain lookup.
    (unsafe { MapVirtualKeyExW(u32::from(vk), MAPVK_VK_TO_VSC, layout) } & 0xff) as u16
}

/// The virtual key `layout` puts at the (non-extended) scan code `scan`, if any.
pub fn vk_for_scan(scan: u16, layout: HKL) -> Option<u16> {
    // SAFETY: a plain lookup.
    let vk = unsafe { MapVirtualKeyExW(u32::from(scan), MAPVK_VSC_TO_VK_EX, layout) } as u16;
    (vk != 0).then_some(vk)
}

/// Whether `vk` is down right now (system-wide, injected input included).
pub fn is_down(vk: u16) -> bool {
    // SAFETY: a plain lookup.
    (unsafe { GetAsyncKeyState(i32::from(vk)) } as u16) & 0x8000 != 0
}

/// Whether the toggle key `vk` (Caps Lock) is on.
pub fn is_toggled(vk: u16) -> bool {
    // SAFETY: a plain lookup.
    (unsafe { GetKeyState(i32::from(vk)) }) & 1 != 0
}
