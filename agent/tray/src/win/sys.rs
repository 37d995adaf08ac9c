//! The Win32 calls the tray's windows need, behind a small safe API: top-level windows
//! ([`Form`]) with static texts, buttons and edit boxes ([`Control`]), a timer, the
//! notification-area icon ([`TrayIcon`]), a popup menu and the message loop. All of it runs on the
//! one UI thread; only [`Waker`] crosses threads (`PostMessageW` is thread-safe).
//!
//! Events reach Rust through one window procedure that looks the window's handler up in a
//! thread-local map and calls a clone of it, so a handler may destroy its own window or open
//! others (which re-enters the procedure) without anything being freed under it. Handles are kept
//! as integers: a stale one makes the call fail (Windows checks handles), never undefined
//! behaviour. Wide (UTF-16, `W`) APIs throughout; the process is system-DPI aware and every size
//! given here is in 96-DPI units, scaled by [`px`].
#![allow(unsafe_code)]
// Every thread_local below is `const`; clippy 1.96 with a std built from source (-Zbuild-std)
// still flags the macro's expansion.
#![allow(clippy::missing_const_for_thread_local)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::rc::Rc;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE, HWND, LPARAM, LRESULT, POINT, RECT,
    WPARAM,
};
use windows_sys::Win32::Graphics::Gdi::{
    COLOR_BTNFACE, ClientToScreen, CreateFontIndirectW, DT_CALCRECT, DT_EDITCONTROL, DT_NOPREFIX,
    DT_SINGLELINE, DT_WORDBREAK, DrawTextW, FW_BOLD, GetDC, GetSysColorBrush, HDC, HFONT,
    ReleaseDC, SelectObject, UpdateWindow,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::Threading::CreateMutexW;
use windows_sys::Win32::UI::Controls::{
    ICC_STANDARD_CLASSES, INITCOMMONCONTROLSEX, InitCommonControlsEx,
};
use windows_sys::Win32::UI::HiDpi::{
    DPI_AWARENESS_CONTEXT_SYSTEM_AWARE, GetDpiForSystem, SetProcessDpiAwarenessContext,
};
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{EnableWindow, SetFocus};
use windows_sys::Win32::UI::Shell::{
    NIF_ICON, NIF_MESSAGE, NIF_TIP, NIM_ADD, NIM_DELETE, NIM_MODIFY, NOTIFYICONDATAW,
    Shell_NotifyIconW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::*;

/// Posted by [`Waker::wake`]: something is queued for the main loop.
const WM_WAKE: u32 = WM_APP + 1;
/// The notification-area icon's callback message.
const WM_TRAY: u32 = WM_APP + 2;
const CLASS: &str = "TetherTrayWindow";
/// The countdown timer's id (one per window).
const TIMER: usize = 1;
/// `EM_SETCUEBANNER`: grey placeholder text in an edit box (shown with visual styles).
const EM_SETCUEBANNER: u32 = 0x1501;
/// `EM_SETLIMITTEXT`, `SS_LEFT`, `SS_NOPREFIX` (in features this crate does not otherwise need).
const EM_SETLIMITTEXT: u32 = 0xC5;
const SS_LEFT: u32 = 0;
const SS_NOPREFIX: u32 = 0x80;
const SS_ICON: u32 = 3;
const SS_REALSIZECONTROL: u32 = 0x40;

/// What a window's handler is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A button was clicked (by its id), or Enter ([`ID_OK`]) / Escape ([`ID_CANCEL`]) pressed.
    Command(u16),
    /// The window's timer fired.
    Timer,
    /// The user asked to close the window (title bar ×, Alt+F4): the handler decides.
    Close,
    /// The window is being destroyed.
    Destroyed,
    /// [`Waker::wake`] was called.
    Wake,
    /// The notification-area icon was clicked.
    TrayClick,
    /// Explorer (re)started: notification-area icons must be added again.
    TaskbarCreated,
}

/// Enter in a window: what its default button does.
pub const ID_OK: u16 = IDOK as u16;
/// Escape in a window.
pub const ID_CANCEL: u16 = IDCANCEL as u16;

pub type Handler = Rc<dyn Fn(Event)>;

thread_local! {
    static HANDLERS: RefCell<BTreeMap<isize, Handler>> = const { RefCell::new(BTreeMap::new()) };
    static FONTS: Cell<Option<Fonts>> = const { Cell::new(None) };
    static TASKBAR_CREATED: Cell<u32> = const { Cell::new(0) };
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn hwnd(h: isize) -> HWND {
    h as HWND
}

fn last_error(what: &str) -> String {
    // SAFETY: no arguments; reads the thread's last-error value.
    let code = unsafe { GetLastError() };
    format!(
        "{what} failed ({})",
        std::io::Error::from_raw_os_error(code as i32)
    )
}

/// Makes the process system-DPI aware and registers the window class with the tray's icon
/// (`icon(size)` gives RGBA pixels). Call once, before any window.
pub fn init(icon: &dyn Fn(u32) -> Vec<u8>) -> Result<(), String> {
    // SAFETY: plain calls with constant arguments or a fully initialised structure. Failure
    // (awareness already set by the manifest) leaves the process as it was.
    unsafe {
        SetProcessDpiAwarenessContext(DPI_AWARENESS_CONTEXT_SYSTEM_AWARE);
        // Loads Common Controls 6 (the manifest asks for it) before the first button.
        let icc = INITCOMMONCONTROLSEX {
            dwSize: std::mem::size_of::<INITCOMMONCONTROLSEX>() as u32,
            dwICC: ICC_STANDARD_CLASSES,
        };
        InitCommonControlsEx(&icc);
        TASKBAR_CREATED.set(RegisterWindowMessageW(wide("TaskbarCreated").as_ptr()));
    }
    // The class's icons live as long as the process.
    // SAFETY: plain metrics queries.
    let (big, small) = unsafe { (GetSystemMetrics(SM_CXICON), GetSystemMetrics(SM_CXSMICON)) };
    let big = Icon::from_rgba(&icon(big.max(16) as u32), big.max(16) as u32)?;
    let small = Icon::from_rgba(&icon(small.max(16) as u32), small.max(16) as u32)?;
    let class = wide(CLASS);
    // SAFETY: the class structure is fully initialised; the strings outlive the call (the
    // system copies the class name).
    let atom = unsafe {
        let wc = WNDCLASSEXW {
            cbSize: std::mem::size_of::<WNDCLASSEXW>() as u32,
            style: 0,
            lpfnWndProc: Some(window_proc),
            cbClsExtra: 0,
            cbWndExtra: 0,
            hInstance: GetModuleHandleW(std::ptr::null()),
            hIcon: big.0,
            hCursor: LoadCursorW(std::ptr::null_mut(), IDC_ARROW),
            hbrBackground: GetSysColorBrush(COLOR_BTNFACE),
            lpszMenuName: std::ptr::null(),
            lpszClassName: class.as_ptr(),
            hIconSm: small.0,
        };
        RegisterClassExW(&wc)
    };
    if atom == 0 {
        return Err(last_error("registering the window class"));
    }
    std::mem::forget(big);
    std::mem::forget(small);
    Ok(())
}

/// Held while this is the only tray app in the user's session (a named mutex in the session's
/// namespace).
pub struct Instance(HANDLE);

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { CloseHandle(self.0) };
    }
}

/// Claims `name` for this session; `None` when another process already holds it.
pub fn single_instance(name: &str) -> Result<Option<Instance>, String> {
    let name = wide(&format!("Local\\{name}"));
    // SAFETY: default security, not initially owned; the name outlives the call. The last
    // error is read right after, on the same thread.
    let (h, err) = unsafe {
        let h = CreateMutexW(std::ptr::null(), 0, name.as_ptr());
        (h, GetLastError())
    };
    if h.is_null() {
        return Err(last_error("creating the tray's instance mutex"));
    }
    if err == ERROR_ALREADY_EXISTS {
        drop(Instance(h));
        return Ok(None);
    }
    Ok(Some(Instance(h)))
}

/// `v` 96-DPI pixels in this screen's pixels.
pub fn px(v: i32) -> i32 {
    // SAFETY: no arguments.
    let dpi = unsafe { GetDpiForSystem() }.max(96) as i32;
    v * dpi / 96
}

/// The fonts windows use: the system's message font, plain and bold, and a larger bold one for
/// headings.
#[derive(Clone, Copy)]
struct Fonts {
    normal: HFONT,
    bold: HFONT,
    large: HFONT,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    Normal,
    Bold,
    Large,
}

fn font(which: Font) -> HFONT {
    let fonts = FONTS.get().unwrap_or_else(|| {
        // SAFETY: NONCLIENTMETRICSW is plain data, sized as the call requires; the fonts live as
        // long as the process.
        let fonts = unsafe {
            let mut m: NONCLIENTMETRICSW = std::mem::zeroed();
            m.cbSize = std::mem::size_of::<NONCLIENTMETRICSW>() as u32;
            SystemParametersInfoW(
                SPI_GETNONCLIENTMETRICS,
                m.cbSize,
                (&raw mut m).cast::<c_void>(),
                0,
            );
            let mut lf = m.lfMessageFont;
            let normal = CreateFontIndirectW(&lf);
            lf.lfWeight = FW_BOLD as i32;
            let bold = CreateFontIndirectW(&lf);
            lf.lfHeight = lf.lfHeight * 6 / 5;
            let large = CreateFontIndirectW(&lf);
            Fonts {
                normal,
                bold,
                large,
            }
        };
        FONTS.set(Some(fonts));
        fonts
    });
    match which {
        Font::Normal => fonts.normal,
        Font::Bold => fonts.bold,
        Font::Large => fonts.large,
    }
}

/// Size of `text` in `font`: wrapped at `width` pixels, or on one line if `width` is `None`.
pub fn measure(text: &str, which: Font, width: Option<i32>) -> (i32, i32) {
    // Terminated, so the pointer is valid even for "" (an empty Vec's is not).
    let w = wide(text);
    let mut rect = RECT {
        left: 0,
        top: 0,
        right: width.unwrap_or(0),
        bottom: 0,
    };
    let flags = DT_CALCRECT
        | DT_NOPREFIX
        | match width {
            Some(_) => DT_WORDBREAK | DT_EDITCONTROL,
            None => DT_SINGLELINE,
        };
    // SAFETY: the screen DC is released below; `w` and `rect` outlive the call.
    unsafe {
        let dc: HDC = GetDC(std::ptr::null_mut());
        let old = SelectObject(dc, font(which));
        DrawTextW(dc, w.as_ptr(), w.len() as i32 - 1, &mut rect, flags);
        SelectObject(dc, old);
        ReleaseDC(std::ptr::null_mut(), dc);
    }
    (rect.right - rect.left, (rect.bottom - rect.top).max(1))
}

/// What kind of top-level window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A titled window with a close button, on the taskbar; `topmost` keeps it above others.
    Dialog { topmost: bool },
    /// The session banner: no frame buttons, always on top, never takes the keyboard, not on
    /// the taskbar.
    Banner,
    /// Never shown: receives wake-ups and the notification icon's clicks.
    Hidden,
}

/// Where [`Form::place`] puts a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Centre,
    TopCentre,
    /// Near the notification area, out of the way of the dialogs (centred) and the banner (top).
    BottomRight,
}

/// A top-level window (a handle: copying it does not copy the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form(isize);

/// A control in a [`Form`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control(isize);

/// How a button looks and behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Push,
    /// Drawn as the default (Enter) button.
    Default,
    /// A push button that stays down when chosen; one per group is down (`first` starts a
    /// group).
    Toggle {
        first: bool,
    },
}

fn styles(kind: Kind) -> (WINDOW_STYLE, WINDOW_EX_STYLE) {
    match kind {
        Kind::Dialog { topmost } => (
            WS_OVERLAPPED | WS_CAPTION | WS_SYSMENU | WS_MINIMIZEBOX,
            WS_EX_CONTROLPARENT | if topmost { WS_EX_TOPMOST } else { 0 },
        ),
        Kind::Banner => (
            WS_POPUP | WS_BORDER,
            WS_EX_TOPMOST | WS_EX_TOOLWINDOW | WS_EX_NOACTIVATE | WS_EX_CONTROLPARENT,
        ),
        Kind::Hidden => (WS_POPUP, WS_EX_TOOLWINDOW),
    }
}

impl Form {
    /// A hidden window of `kind`; give it a handler with [`Form::on_event`].
    pub fn create(kind: Kind, title: &str) -> Result<Form, String> {
        let (style, ex) = styles(kind);
        let class = wide(CLASS);
        let title = wide(title);
        // SAFETY: the strings outlive the call; no parent, menu or creation data.
        let h = unsafe {
            CreateWindowExW(
                ex,
                class.as_ptr(),
                title.as_ptr(),
                style,
                CW_USEDEFAULT,
                CW_USEDEFAULT,
                px(200),
                px(100),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                GetModuleHandleW(std::ptr::null()),
                std::ptr::null(),
            )
        };
        if h.is_null() {
            return Err(last_error("creating a window"));
        }
        Ok(Form(h as isize))
    }

    /// Sends this window's events to `handler` from now on.
    pub fn on_event(self, handler: impl Fn(Event) + 'static) {
        let old = HANDLERS.with_borrow_mut(|m| m.insert(self.0, Rc::new(handler)));
        drop(old);
    }

    fn child(self, class: &str, text: &str, style: WINDOW_STYLE, id: u16, r: RECT) -> Control {
        let class = wide(class);
        let text = wide(text);
        // SAFETY: the strings outlive the call; the parent is this window; a child's "menu" is
        // its id.
        let h = unsafe {
            CreateWindowExW(
                if class_is(&class, "EDIT") {
                    WS_EX_CLIENTEDGE
                } else {
                    0
                },
                class.as_ptr(),
                text.as_ptr(),
                WS_CHILD | WS_VISIBLE | style,
                r.left,
                r.top,
                r.right - r.left,
                r.bottom - r.top,
                hwnd(self.0),
                usize::from(id) as HMENU,
                GetModuleHandleW(std::ptr::null()),
                std::ptr::null(),
            )
        };
        let c = Control(h as isize);
        c.set_font(Font::Normal);
        c
    }

    /// A static text at (x, y), `width` wide and as tall as its wrapped text; returns it and
    /// its height. Plain text: `&` is shown, never an accelerator.
    pub fn label(self, text: &str, which: Font, x: i32, y: i32, width: i32) -> (Control, i32) {
        let (_, h) = measure(text, which, Some(width));
        let c = self.child(
            "STATIC",
            text,
            (SS_LEFT | SS_NOPREFIX) as WINDOW_STYLE,
            0,
            rect(x, y, width, h),
        );
        c.set_font(which);
        (c, h)
    }

    /// A picture of `icon`, scaled to the control's size; the icon must outlive the control.
    pub fn picture(self, icon: &Icon, r: (i32, i32, i32, i32)) -> Control {
        let c = self.child(
            "STATIC",
            "",
            (SS_ICON | SS_REALSIZECONTROL) as WINDOW_STYLE,
            0,
            rect(r.0, r.1, r.2, r.3),
        );
        // SAFETY: STM_SETICON takes the handle; the caller keeps the icon alive.
        unsafe { SendMessageW(hwnd(c.0), STM_SETICON, icon.0 as WPARAM, 0) };
        c
    }

    pub fn button(self, id: u16, text: &str, kind: Button, r: (i32, i32, i32, i32)) -> Control {
        let style = match kind {
            Button::Push => BS_PUSHBUTTON as WINDOW_STYLE | WS_TABSTOP,
            Button::Default => BS_DEFPUSHBUTTON as WINDOW_STYLE | WS_TABSTOP,
            Button::Toggle { first } => {
                (BS_AUTORADIOBUTTON | BS_PUSHLIKE) as WINDOW_STYLE
                    | if first { WS_GROUP | WS_TABSTOP } else { 0 }
            }
        };
        self.child("BUTTON", text, style, id, rect(r.0, r.1, r.2, r.3))
    }

    /// A one-line edit box holding at most `limit` characters, with grey `placeholder` text
    /// where the system shows it.
    pub fn edit(
        self,
        id: u16,
        placeholder: &str,
        limit: usize,
        r: (i32, i32, i32, i32),
    ) -> Control {
        let c = self.child(
            "EDIT",
            "",
            (ES_AUTOHSCROLL as WINDOW_STYLE) | WS_TABSTOP,
            id,
            rect(r.0, r.1, r.2, r.3),
        );
        let cue = wide(placeholder);
        // SAFETY: the edit box copies the cue text before the call returns.
        unsafe {
            SendMessageW(hwnd(c.0), EM_SETLIMITTEXT, limit, 0);
            SendMessageW(hwnd(c.0), EM_SETCUEBANNER, 0, cue.as_ptr() as LPARAM);
        }
        c
    }

    /// Sizes the window so its client area is `w`×`h`.
    pub fn set_client_size(self, w: i32, h: i32) {
        // SAFETY: reads this window's styles and resizes it; a stale handle fails harmlessly.
        unsafe {
            let style = GetWindowLongW(hwnd(self.0), GWL_STYLE) as WINDOW_STYLE;
            let ex = GetWindowLongW(hwnd(self.0), GWL_EXSTYLE) as WINDOW_EX_STYLE;
            let mut r = rect(0, 0, w, h);
            AdjustWindowRectEx(&mut r, style, 0, ex);
            SetWindowPos(
                hwnd(self.0),
                std::ptr::null_mut(),
                0,
                0,
                r.right - r.left,
                r.bottom - r.top,
                SWP_NOMOVE | SWP_NOZORDER | SWP_NOACTIVATE,
            );
        }
    }

    /// Moves the window to `place` in the primary screen's work area (the screen less the
    /// taskbar).
    pub fn place(self, place: Place) {
        // SAFETY: plain structures filled by the system; a stale handle fails harmlessly.
        unsafe {
            let mut area = rect(0, 0, 0, 0);
            SystemParametersInfoW(SPI_GETWORKAREA, 0, (&raw mut area).cast::<c_void>(), 0);
            let mut r = rect(0, 0, 0, 0);
            GetWindowRect(hwnd(self.0), &mut r);
            let (w, h) = (r.right - r.left, r.bottom - r.top);
            let centre_x = area.left + (area.right - area.left - w).max(0) / 2;
            let (x, y) = match place {
                Place::Centre => (centre_x, area.top + (area.bottom - area.top - h).max(0) / 2),
                Place::TopCentre => (centre_x, area.top),
                Place::BottomRight => (
                    (area.right - w - px(12)).max(area.left),
                    (area.bottom - h - px(12)).max(area.top),
                ),
            };
            SetWindowPos(
                hwnd(self.0),
                std::ptr::null_mut(),
                x,
                y,
                0,
                0,
                SWP_NOSIZE | SWP_NOZORDER | SWP_NOACTIVATE,
            );
        }
    }

    /// Shows the window. With `activate` it is brought to the front with the keyboard (if
    /// Windows refuses, because another program has the foreground, its taskbar button flashes);
    /// without, it appears without taking the keyboard from what the user is typing.
    pub fn show(self, activate: bool) {
        // SAFETY: plain calls on this window; FLASHWINFO is fully initialised.
        unsafe {
            let h = hwnd(self.0);
            ShowWindow(h, if activate { SW_SHOW } else { SW_SHOWNOACTIVATE });
            if activate && SetForegroundWindow(h) == 0 {
                let flash = FLASHWINFO {
                    cbSize: std::mem::size_of::<FLASHWINFO>() as u32,
                    hwnd: h,
                    dwFlags: FLASHW_ALL | FLASHW_TIMERNOFG,
                    uCount: 0,
                    dwTimeout: 0,
                };
                FlashWindowEx(&flash);
            }
            UpdateWindow(h);
        }
    }

    pub fn hide(self) {
        // SAFETY: a stale handle fails harmlessly.
        unsafe { ShowWindow(hwnd(self.0), SW_HIDE) };
    }

    /// Destroys the window (its handler gets [`Event::Destroyed`]); nothing if already gone.
    pub fn destroy(self) {
        // SAFETY: a stale handle fails harmlessly (our windows are only destroyed on their own
        // thread, this one).
        unsafe {
            if IsWindow(hwnd(self.0)) != 0 {
                DestroyWindow(hwnd(self.0));
            }
        }
    }

    /// [`Event::Timer`] every `ms` milliseconds.
    pub fn start_timer(self, ms: u32) {
        // SAFETY: a timer on this window, no callback (it arrives as WM_TIMER).
        unsafe { SetTimer(hwnd(self.0), TIMER, ms, None) };
    }

    pub fn stop_timer(self) {
        // SAFETY: a stale handle or missing timer fails harmlessly.
        unsafe { KillTimer(hwnd(self.0), TIMER) };
    }

    /// A handle other threads can use to send this window [`Event::Wake`].
    pub fn waker(self) -> Waker {
        Waker(self.0)
    }
}

fn class_is(class: &[u16], name: &str) -> bool {
    class[..class.len() - 1] == name.encode_utf16().collect::<Vec<_>>()[..]
}

fn rect(x: i32, y: i32, w: i32, h: i32) -> RECT {
    RECT {
        left: x,
        top: y,
        right: x + w,
        bottom: y + h,
    }
}

impl Control {
    fn set_font(self, which: Font) {
        // SAFETY: WM_SETFONT takes the font handle; fonts live as long as the process.
        unsafe { SendMessageW(hwnd(self.0), WM_SETFONT, font(which) as WPARAM, 1) };
    }

    pub fn set_text(self, text: &str) {
        let w = wide(text);
        // SAFETY: the string outlives the call.
        unsafe { SetWindowTextW(hwnd(self.0), w.as_ptr()) };
    }

    pub fn text(self) -> String {
        // SAFETY: the buffer is as long as we say; the system writes at most that many units.
        unsafe {
            let len = GetWindowTextLengthW(hwnd(self.0)).max(0) as usize;
            let mut buf = vec![0u16; len + 1];
            let n = GetWindowTextW(hwnd(self.0), buf.as_mut_ptr(), buf.len() as i32).max(0);
            String::from_utf16_lossy(&buf[..n as usize])
        }
    }

    /// Moves and sizes the control (client coordinates of its window).
    pub fn place(self, x: i32, y: i32, w: i32, h: i32) {
        // SAFETY: a stale handle fails harmlessly.
        unsafe {
            SetWindowPos(
                hwnd(self.0),
                std::ptr::null_mut(),
                x,
                y,
                w,
                h,
                SWP_NOZORDER | SWP_NOACTIVATE,
            )
        };
    }

    pub fn enable(self, on: bool) {
        // SAFETY: a stale handle fails harmlessly.
        unsafe { EnableWindow(hwnd(self.0), i32::from(on)) };
    }

    pub fn focus(self) {
        // SAFETY: a stale handle fails harmlessly.
        unsafe { SetFocus(hwnd(self.0)) };
    }

    /// Whether a toggle button is down.
    pub fn is_checked(self) -> bool {
        // SAFETY: a query with no pointers.
        unsafe { SendMessageW(hwnd(self.0), BM_GETCHECK, 0, 0) == 1 }
    }

    /// The control's centre in screen coordinates (what a click there needs).
    pub fn screen_centre(self) -> Option<(i32, i32)> {
        // SAFETY: plain structures filled by the system.
        unsafe {
            let mut r = rect(0, 0, 0, 0);
            if GetClientRect(hwnd(self.0), &mut r) == 0 {
                return None;
            }
            let mut p = POINT {
                x: (r.right - r.left) / 2,
                y: (r.bottom - r.top) / 2,
            };
            (ClientToScreen(hwnd(self.0), &mut p) != 0).then_some((p.x, p.y))
        }
    }
}

/// Wakes a window from any thread ([`Event::Wake`]).
#[derive(Debug, Clone, Copy)]
pub struct Waker(isize);

impl Waker {
    /// False once the window is gone.
    pub fn wake(&self) -> bool {
        // SAFETY: PostMessageW may be called from any thread; a stale handle fails.
        unsafe { PostMessageW(hwnd(self.0), WM_WAKE, 0, 0) != 0 }
    }
}

/// Runs the message loop until [`quit`]; Tab, Enter and Escape work in every window as in a
/// dialog box.
pub fn run_loop() {
    // SAFETY: the standard loop; MSG is plain data filled by GetMessageW.
    unsafe {
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            let root = GetAncestor(msg.hwnd, GA_ROOT);
            if !root.is_null() && IsDialogMessageW(root, &msg) != 0 {
                continue;
            }
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
}

/// Ends [`run_loop`].
pub fn quit() {
    // SAFETY: no pointers.
    unsafe { PostQuitMessage(0) };
}

unsafe extern "system" fn window_proc(
    h: HWND,
    msg: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    let key = h as isize;
    let event = match msg {
        // Buttons (notification code 0, BN_CLICKED), and Enter/Escape from IsDialogMessageW;
        // edit boxes' notifications have other codes.
        WM_COMMAND if (wparam >> 16) & 0xffff == 0 => {
            Some(Event::Command((wparam & 0xffff) as u16))
        }
        WM_TIMER if wparam == TIMER => Some(Event::Timer),
        WM_CLOSE => Some(Event::Close),
        WM_DESTROY => Some(Event::Destroyed),
        WM_WAKE => Some(Event::Wake),
        WM_TRAY => match (lparam & 0xffff) as u32 {
            WM_LBUTTONUP | WM_RBUTTONUP | WM_CONTEXTMENU => Some(Event::TrayClick),
            _ => None,
        },
        m if m != 0 && m == TASKBAR_CREATED.get() => Some(Event::TaskbarCreated),
        WM_NCDESTROY => {
            // Dropped outside the map's borrow: what the handler owns (the whole app, for the
            // hidden window) may call into Windows, which may send this procedure messages.
            let handler = HANDLERS.with_borrow_mut(|m| m.remove(&key));
            drop(handler);
            None
        }
        _ => None,
    };
    if let Some(event) = event {
        // A clone: the handler may destroy this window (removing it from the map) while running.
        if let Some(handler) = HANDLERS.with_borrow(|m| m.get(&key).cloned()) {
            handler(event);
            return 0;
        }
    }
    // SAFETY: the arguments are the ones the system passed.
    unsafe { DefWindowProcW(h, msg, wparam, lparam) }
}

/// An icon handle, destroyed on drop.
pub struct Icon(HICON);

impl Icon {
    /// From `size`×`size` RGBA pixels.
    pub fn from_rgba(rgba: &[u8], size: u32) -> Result<Icon, String> {
        let n = (size * size) as usize;
        if rgba.len() != n * 4 {
            return Err(format!(
                "icon pixels: {} bytes for {size}×{size}",
                rgba.len()
            ));
        }
        // BGRA for the colour plane; the AND mask (1 bit a pixel, rows padded to 16 bits) marks
        // fully transparent pixels.
        let mut bgra = Vec::with_capacity(n * 4);
        for p in rgba.chunks_exact(4) {
            bgra.extend_from_slice(&[p[2], p[1], p[0], p[3]]);
        }
        let row = (size as usize).div_ceil(16) * 2;
        let mut mask = vec![0u8; row * size as usize];
        for (i, p) in rgba.chunks_exact(4).enumerate() {
            if p[3] == 0 {
                let (x, y) = (i % size as usize, i / size as usize);
                mask[y * row + x / 8] |= 0x80 >> (x % 8);
            }
        }
        // SAFETY: both planes are as large as CreateIcon reads for these dimensions.
        let h = unsafe {
            CreateIcon(
                GetModuleHandleW(std::ptr::null()),
                size as i32,
                size as i32,
                1,
                32,
                mask.as_ptr(),
                bgra.as_ptr(),
            )
        };
        if h.is_null() {
            return Err(last_error("creating an icon"));
        }
        Ok(Icon(h))
    }
}

impl Drop for Icon {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { DestroyIcon(self.0) };
    }
}

/// The size of a notification-area icon on this screen.
pub fn small_icon_size() -> u32 {
    // SAFETY: a plain metrics query.
    (unsafe { GetSystemMetrics(SM_CXSMICON) }).max(16) as u32
}

/// An icon in the taskbar's notification area; clicks reach its window as
/// [`Event::TrayClick`]. Removed on drop.
pub struct TrayIcon {
    form: Form,
    icon: Icon,
    tip: String,
}

impl TrayIcon {
    /// Adds the icon; an error when the shell has no notification area (or refuses).
    pub fn add(form: Form, icon: Icon, tip: &str) -> Result<TrayIcon, String> {
        let t = TrayIcon {
            form,
            icon,
            tip: tip.to_string(),
        };
        if !t.notify(NIM_ADD) {
            return Err(last_error("Shell_NotifyIconW(NIM_ADD)"));
        }
        Ok(t)
    }

    /// Adds it again (after Explorer restarted).
    pub fn restore(&self) -> bool {
        self.notify(NIM_ADD)
    }

    pub fn set(&mut self, icon: Option<Icon>, tip: &str) {
        if let Some(icon) = icon {
            self.icon = icon;
        }
        self.tip = tip.to_string();
        self.notify(NIM_MODIFY);
    }

    fn notify(&self, what: u32) -> bool {
        // SAFETY: NOTIFYICONDATAW is plain data, fully initialised (zeroed, then filled).
        unsafe {
            let mut d: NOTIFYICONDATAW = std::mem::zeroed();
            d.cbSize = std::mem::size_of::<NOTIFYICONDATAW>() as u32;
            d.hWnd = hwnd(self.form.0);
            d.uID = 1;
            d.uFlags = NIF_ICON | NIF_MESSAGE | NIF_TIP;
            d.uCallbackMessage = WM_TRAY;
            d.hIcon = self.icon.0;
            // The tip is cut to the field (127 units and the terminator).
            for (dst, src) in d.szTip.iter_mut().zip(self.tip.encode_utf16().take(127)) {
                *dst = src;
            }
            Shell_NotifyIconW(what, &d) != 0
        }
    }
}

impl Drop for TrayIcon {
    fn drop(&mut self) {
        self.notify(NIM_DELETE);
    }
}

/// One line of a popup menu.
pub enum MenuItem<'a> {
    Item {
        id: u16,
        text: &'a str,
        enabled: bool,
    },
    Separator,
}

/// Shows a popup menu at the mouse pointer for `owner` and returns the chosen item's id.
pub fn popup_menu(owner: Form, items: &[MenuItem]) -> Option<u16> {
    // SAFETY: the menu is created and destroyed here; the strings outlive AppendMenuW (which
    // copies them); POINT is filled by the system.
    unsafe {
        let menu = CreatePopupMenu();
        if menu.is_null() {
            return None;
        }
        for item in items {
            match item {
                MenuItem::Item { id, text, enabled } => {
                    let w = wide(text);
                    let flags = MF_STRING | if *enabled { MF_ENABLED } else { MF_GRAYED };
                    AppendMenuW(menu, flags, usize::from(*id), w.as_ptr());
                }
                MenuItem::Separator => {
                    AppendMenuW(menu, MF_SEPARATOR, 0, std::ptr::null());
                }
            }
        }
        let mut p = POINT { x: 0, y: 0 };
        GetCursorPos(&mut p);
        // Without the foreground the menu would not close when the user clicks elsewhere.
        SetForegroundWindow(hwnd(owner.0));
        let chosen = TrackPopupMenu(
            menu,
            TPM_RETURNCMD | TPM_RIGHTBUTTON | TPM_NONOTIFY,
            p.x,
            p.y,
            0,
            hwnd(owner.0),
            std::ptr::null(),
        );
        PostMessageW(hwnd(owner.0), WM_NULL, 0, 0);
        DestroyMenu(menu);
        u16::try_from(chosen).ok().filter(|&id| id != 0)
    }
}
