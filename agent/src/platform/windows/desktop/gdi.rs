//! The GDI side of the Windows desktop (FFI): the monitors, the virtual screen, screen capture
//! into a 32-bit top-down DIB section, the pointer's position and image. Every handle is owned by
//! an RAII type that releases it.

#![allow(unsafe_code)]

use std::io;
use std::ptr;
use windows_sys::Win32::Foundation::{LPARAM, POINT, RECT};
use windows_sys::Win32::Graphics::Gdi::{
    BI_RGB, BITMAP, BITMAPINFO, BITMAPINFOHEADER, BitBlt, CAPTUREBLT, CreateCompatibleDC,
    CreateDIBSection, DIB_RGB_COLORS, DeleteDC, DeleteObject, EnumDisplayMonitors, GdiFlush, GetDC,
    GetDIBits, GetMonitorInfoW, GetObjectW, HBITMAP, HDC, HGDIOBJ, HMONITOR, MONITORINFO,
    ReleaseDC, SRCCOPY, SelectObject,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CURSOR_SHOWING, CURSORINFO, GetCursorInfo, GetCursorPos, GetIconInfo, GetSystemMetrics,
    ICONINFO, MONITORINFOF_PRIMARY, SM_CXSCREEN, SM_CXVIRTUALSCREEN, SM_CYSCREEN,
    SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN, SM_YVIRTUALSCREEN, SetProcessDPIAware,
};
use windows_sys::core::BOOL;

/// A rectangle of the virtual screen, in physical pixels (the primary monitor's top left is
/// (0, 0); others may lie at negative coordinates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub left: i32,
    pub top: i32,
    pub width: i32,
    pub height: i32,
}

/// One monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Monitor {
    pub area: Area,
    pub primary: bool,
}

/// Asks Windows for physical pixels rather than scaled ones (else capture, positions and the
/// virtual screen are all in a DPI-virtualised space on scaled monitors). Process-wide; a
/// manifest may already have done it.
pub fn dpi_aware() {
    // SAFETY: no arguments; it only sets a process flag.
    unsafe {
        SetProcessDPIAware();
    }
}

unsafe extern "system" fn collect(hm: HMONITOR, _: HDC, _: *mut RECT, data: LPARAM) -> BOOL {
    // SAFETY: `data` is the `&mut Vec<HMONITOR>` that `monitors` passed, alive for the call.
    let list = unsafe { &mut *(data as *mut Vec<HMONITOR>) };
    list.push(hm);
    1
}

/// The monitors, primary first, then left to right, top to bottom.
pub fn monitors() -> io::Result<Vec<Monitor>> {
    let mut handles: Vec<HMONITOR> = Vec::new();
    // SAFETY: a null DC and clip rectangle enumerate every monitor; the callback only pushes to
    // `handles`, which outlives the call.
    let ok = unsafe {
        EnumDisplayMonitors(
            ptr::null_mut(),
            ptr::null(),
            Some(collect),
            &mut handles as *mut Vec<HMONITOR> as LPARAM,
        )
    };
    let mut out = Vec::with_capacity(handles.len());
    for hm in handles {
        let mut info = MONITORINFO {
            cbSize: size_of::<MONITORINFO>() as u32,
            ..Default::default()
        };
        // SAFETY: `hm` came from the enumeration; `info` is a MONITORINFO with its size set.
        if unsafe { GetMonitorInfoW(hm, &mut info) } == 0 {
            continue;
        }
        let r = info.rcMonitor;
        out.push(Monitor {
            area: Area {
                left: r.left,
                top: r.top,
                width: r.right - r.left,
                height: r.bottom - r.top,
            },
            primary: info.dwFlags & MONITORINFOF_PRIMARY != 0,
        });
    }
    if out.is_empty() {
        // No monitor enumerated (a service's invisible desktop, an old Wine): the primary screen.
        let (width, height) = (metric(SM_CXSCREEN), metric(SM_CYSCREEN));
        if width <= 0 || height <= 0 {
            return Err(if ok == 0 {
                io::Error::last_os_error()
            } else {
                io::Error::other("no monitor")
            });
        }
        out.push(Monitor {
            area: Area {
                left: 0,
                top: 0,
                width,
                height,
            },
            primary: true,
        });
    }
    out.sort_by_key(|m| (!m.primary, m.area.left, m.area.top));
    Ok(out)
}

fn metric(index: i32) -> i32 {
    // SAFETY: reads a system metric; no pointers.
    unsafe { GetSystemMetrics(index) }
}

/// The virtual screen: the bounding box of every monitor.
pub fn virtual_screen() -> Area {
    Area {
        left: metric(SM_XVIRTUALSCREEN),
        top: metric(SM_YVIRTUALSCREEN),
        width: metric(SM_CXVIRTUALSCREEN),
        height: metric(SM_CYVIRTUALSCREEN),
    }
}

/// The screen's device context (`GetDC(NULL)`), released on drop.
struct ScreenDc(HDC);

impl ScreenDc {
    fn get() -> io::Result<Self> {
        // SAFETY: a null window asks for the whole screen's DC.
        let dc = unsafe { GetDC(ptr::null_mut()) };
        if dc.is_null() {
            return Err(io::Error::other("GetDC(NULL) failed"));
        }
        Ok(Self(dc))
    }
}

impl Drop for ScreenDc {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from GetDC(NULL) and is released once.
        unsafe {
            ReleaseDC(ptr::null_mut(), self.0);
        }
    }
}

/// A memory device context, deleted on drop.
struct MemDc(HDC);

impl MemDc {
    fn compatible(with: &ScreenDc) -> io::Result<Self> {
        // SAFETY: `with.0` is a live DC.
        let dc = unsafe { CreateCompatibleDC(with.0) };
        if dc.is_null() {
            return Err(io::Error::other("CreateCompatibleDC failed"));
        }
        Ok(Self(dc))
    }
}

impl Drop for MemDc {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from CreateCompatibleDC and is deleted once.
        unsafe {
            DeleteDC(self.0);
        }
    }
}

/// A GDI bitmap, deleted on drop (it must not be selected into a DC by then).
struct Bitmap(HBITMAP);

impl Drop for Bitmap {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: `self.0` is a bitmap this module owns, deleted once.
            unsafe {
                DeleteObject(self.0 as HGDIOBJ);
            }
        }
    }
}

/// BITMAPINFO for 32-bit top-down rows of `width` × `height`.
fn info32(width: i32, height: i32) -> BITMAPINFO {
    BITMAPINFO {
        bmiHeader: BITMAPINFOHEADER {
            biSize: size_of::<BITMAPINFOHEADER>() as u32,
            biWidth: width,
            biHeight: -height,
            biPlanes: 1,
            biBitCount: 32,
            biCompression: BI_RGB,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Captures one area of the screen into a DIB section of its size, kept between frames.
pub struct Grabber {
    width: i32,
    height: i32,
    bits: *const u8,
    /// The raster operation: with CAPTUREBLT (layered windows included) until that gives an
    /// all-black frame where plain SRCCOPY does not (Wine 8 blits black with CAPTUREBLT).
    rop: u32,
    /// The bitmap the memory DC held before ours; put back before ours is deleted.
    old: HGDIOBJ,
    // Dropped in this order: the DIB (once deselected, in `Drop`), then the memory DC.
    _dib: Bitmap,
    mem: MemDc,
}

impl Grabber {
    pub fn new(width: i32, height: i32) -> io::Result<Self> {
        if width <= 0 || height <= 0 {
            return Err(io::Error::other(format!("empty area {width}x{height}")));
        }
        let screen = ScreenDc::get()?;
        let mem = MemDc::compatible(&screen)?;
        let info = info32(width, height);
        let mut bits: *mut core::ffi::c_void = ptr::null_mut();
        // SAFETY: `info` describes a 32-bit top-down DIB; `bits` receives its pixel pointer,
        // valid while the section lives (owned by `dib` below).
        let dib = Bitmap(unsafe {
            CreateDIBSection(mem.0, &info, DIB_RGB_COLORS, &mut bits, ptr::null_mut(), 0)
        });
        if dib.0.is_null() || bits.is_null() {
            return Err(io::Error::other(format!(
                "CreateDIBSection {width}x{height} failed"
            )));
        }
        // SAFETY: both handles are live; the previous object is kept to be restored.
        let old = unsafe { SelectObject(mem.0, dib.0 as HGDIOBJ) };
        if old.is_null() {
            return Err(io::Error::other("SelectObject failed"));
        }
        Ok(Self {
            width,
            height,
            bits: bits as *const u8,
            rop: SRCCOPY | CAPTUREBLT,
            old,
            _dib: dib,
            mem,
        })
    }

    pub fn size(&self) -> (i32, i32) {
        (self.width, self.height)
    }

    /// Copies the screen's pixels at (`left`, `top`), of the grabber's size, as BGRX rows
    /// packed (stride = width × 4) into `out`.
    pub fn grab(&mut self, left: i32, top: i32, out: &mut Vec<u8>) -> io::Result<()> {
        let rop = self.rop;
        self.blit(left, top, rop)?;
        if rop != SRCCOPY && self.pixels().iter().all(|&b| b == 0) {
            self.blit(left, top, SRCCOPY)?;
            if self.pixels().iter().any(|&b| b != 0) {
                tracing::info!("screen capture: CAPTUREBLT gives black frames, using SRCCOPY");
                self.rop = SRCCOPY;
            }
        }
        out.clear();
        out.extend_from_slice(self.pixels());
        Ok(())
    }

    /// Blits the area into the DIB.
    fn blit(&mut self, left: i32, top: i32, rop: u32) -> io::Result<()> {
        let screen = ScreenDc::get()?;
        // SAFETY: both DCs are live; the memory DC holds our DIB of exactly this size.
        let ok = unsafe {
            BitBlt(
                self.mem.0,
                0,
                0,
                self.width,
                self.height,
                screen.0,
                left,
                top,
                rop,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: no arguments; makes GDI finish writing the DIB before it is read.
        unsafe {
            GdiFlush();
        }
        Ok(())
    }

    /// The DIB's pixels, as the last blit left them.
    fn pixels(&self) -> &[u8] {
        let len = self.width as usize * self.height as usize * 4;
        // SAFETY: the DIB section is `width × height` 32-bit pixels with no row padding (a
        // 32-bit row is always DWORD-aligned), alive while `self._dib` is; GDI writes it only
        // in `blit`, which takes `&mut self`, so not while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.bits, len) }
    }
}

impl Drop for Grabber {
    fn drop(&mut self) {
        // SAFETY: puts back the DC's original bitmap so ours can be deleted next.
        unsafe {
            SelectObject(self.mem.0, self.old);
        }
    }
}

/// The pointer's position on the virtual screen.
pub fn cursor_pos() -> Option<(i32, i32)> {
    let mut p = POINT { x: 0, y: 0 };
    // SAFETY: `p` is a POINT to fill.
    (unsafe { GetCursorPos(&mut p) } != 0).then_some((p.x, p.y))
}

/// The pointer's position and its cursor's handle (as a number, to tell changes), if shown.
pub fn cursor_info() -> Option<((i32, i32), Option<usize>)> {
    let mut ci = CURSORINFO {
        cbSize: size_of::<CURSORINFO>() as u32,
        ..Default::default()
    };
    // SAFETY: `ci` is a CURSORINFO with its size set.
    if unsafe { GetCursorInfo(&mut ci) } == 0 {
        return None;
    }
    let shown = ci.flags & CURSOR_SHOWING != 0 && !ci.hCursor.is_null();
    Some((
        (ci.ptScreenPos.x, ci.ptScreenPos.y),
        shown.then_some(ci.hCursor as usize),
    ))
}

/// A cursor's image: straight (not premultiplied) BGRA rows, top-down, and its hot spot.
pub struct CursorBits {
    pub width: u32,
    pub height: u32,
    pub hot_x: u32,
    pub hot_y: u32,
    /// BGRA, alpha as the cursor has it (all 0 for a cursor without alpha).
    pub color: Option<Vec<u8>>,
    /// The AND mask then (monochrome cursors) the XOR mask, one 32-bit BGRX pixel each (0 or
    /// white), `height` rows each.
    pub mask: Vec<u8>,
}

/// The image of the cursor `handle` (from [`cursor_info`]), read while it is still current.
pub fn cursor_bits(handle: usize) -> Option<CursorBits> {
    let mut ii = ICONINFO::default();
    // SAFETY: `handle` is the current cursor's handle from GetCursorInfo (a shared cursor
    // handle, which stays valid); `ii` receives two bitmaps this function then owns.
    if unsafe { GetIconInfo(handle as _, &mut ii) } == 0 {
        return None;
    }
    let mask_bm = Bitmap(ii.hbmMask);
    let color_bm = Bitmap(ii.hbmColor);
    let (mw, mh) = bitmap_size(&mask_bm)?;
    let color = if color_bm.0.is_null() {
        None
    } else {
        let (cw, ch) = bitmap_size(&color_bm)?;
        Some((read32(&color_bm, cw, ch)?, cw, ch))
    };
    let mask = read32(&mask_bm, mw, mh)?;
    let (width, height) = match &color {
        Some((_, cw, ch)) => (*cw, *ch),
        // A monochrome cursor's mask is the AND mask over the XOR mask.
        None => (mw, mh / 2),
    };
    Some(CursorBits {
        width: width as u32,
        height: height as u32,
        hot_x: ii.xHotspot,
        hot_y: ii.yHotspot,
        color: color.map(|(c, _, _)| c),
        mask,
    })
}

fn bitmap_size(bm: &Bitmap) -> Option<(i32, i32)> {
    let mut b = BITMAP::default();
    // SAFETY: `bm.0` is a live bitmap; `b` is a BITMAP of the size given.
    let n = unsafe {
        GetObjectW(
            bm.0 as HGDIOBJ,
            size_of::<BITMAP>() as i32,
            &mut b as *mut BITMAP as *mut core::ffi::c_void,
        )
    };
    (n != 0 && b.bmWidth > 0 && b.bmHeight > 0 && b.bmWidth <= 1024 && b.bmHeight <= 2048)
        .then_some((b.bmWidth, b.bmHeight))
}

/// A bitmap's pixels as 32-bit top-down rows.
fn read32(bm: &Bitmap, width: i32, height: i32) -> Option<Vec<u8>> {
    let screen = ScreenDc::get().ok()?;
    let mut info = info32(width, height);
    let mut out = vec![0u8; width as usize * height as usize * 4];
    // SAFETY: `out` holds exactly `height` rows of `width` 32-bit pixels as `info` describes;
    // the bitmap is not selected into any DC.
    let lines = unsafe {
        GetDIBits(
            screen.0,
            bm.0,
            0,
            height as u32,
            out.as_mut_ptr() as *mut core::ffi::c_void,
            &mut info,
            DIB_RGB_COLORS,
        )
    };
    (lines == height).then_some(out)
}
