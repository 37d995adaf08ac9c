//! Where the user sees the tray's state between dialogs: a tray icon with a menu when the desktop
//! can show one (the library is installed and a StatusNotifier host is registered, see
//! [`crate::sni`]), else the small status window. tray-icon loads libayatana-appindicator3 at run
//! time and panics when it is missing, so the library is looked for first and the icon is built
//! under `catch_unwind` as a second line of defence.

use crate::icon::{self, Look};
use crate::msg::{Msg, Post};
use crate::ui::status_window::StatusWindow;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tracing::{info, warn};
use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

/// The libraries libappindicator-sys tries, in its order.
const LIBRARIES: [&str; 2] = ["libayatana-appindicator3.so.1", "libappindicator3.so.1"];

pub enum Indicator {
    Tray(Tray),
    Window(StatusWindow),
}

impl Indicator {
    /// A tray icon if `want_icon` and the desktop supports it, else the status window.
    pub fn new(want_icon: bool, post: Post) -> Self {
        if !want_icon {
            info!("tray icon disabled; showing the status window");
            return Indicator::Window(StatusWindow::new(post));
        }
        if !appindicator_installed() {
            warn!(
                "no tray icon: libayatana-appindicator3 is not installed (install libayatana-appindicator3-1); showing a status window instead"
            );
            return Indicator::Window(StatusWindow::new(post));
        }
        // The library alone proves nothing: without a StatusNotifier host the icon is invisible.
        if let Err(why) = crate::sni::host_registered() {
            warn!(
                "no tray icon: {why}; showing a status window instead (not checked again: restart tether-tray to use a tray host started later)"
            );
            return Indicator::Window(StatusWindow::new(post));
        }
        info!("a StatusNotifier host is registered on the session bus; using a tray icon");
        match Tray::new(post.clone()) {
            Ok(tray) => Indicator::Tray(tray),
            Err(e) => {
                warn!("no tray icon: {e}; showing a status window instead");
                Indicator::Window(StatusWindow::new(post))
            }
        }
    }

    pub fn update(&mut self, status: &str, look: Look, can_end: bool) {
        match self {
            Indicator::Tray(t) => t.update(status, look, can_end),
            Indicator::Window(w) => w.update(status, look, can_end),
        }
    }
}

pub struct Tray {
    icon: TrayIcon,
    status: MenuItem,
    end: MenuItem,
    look: Look,
}

impl Tray {
    fn new(post: Post) -> Result<Self, String> {
        let status = MenuItem::new(crate::text::NOT_RUNNING, false, None);
        let end = MenuItem::new("End session", false, None);
        let quit = MenuItem::new("Quit", true, None);
        let menu = Menu::new();
        menu.append_items(&[&status, &PredefinedMenuItem::separator(), &end, &quit])
            .map_err(|e| format!("cannot build the tray menu: {e}"))?;

        // Menu clicks arrive on the GTK thread through muda's global handler; they are posted
        // to the main loop like every other event.
        let (end_id, quit_id) = (end.id().clone(), quit.id().clone());
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            if e.id == end_id {
                post.send(Msg::EndAll);
            } else if e.id == quit_id {
                post.send(Msg::Quit);
            }
        }));

        let look = Look::Offline;
        let builder = TrayIconBuilder::new()
            .with_id("tether-tray")
            .with_icon(make_icon(look)?)
            .with_tooltip(crate::text::NOT_RUNNING)
            .with_menu(Box::new(menu));
        let icon = build_quietly(builder)?;
        info!("tray icon created");
        Ok(Self {
            icon,
            status,
            end,
            look,
        })
    }

    fn update(&mut self, status: &str, look: Look, can_end: bool) {
        self.status.set_text(status);
        self.end.set_enabled(can_end);
        if let Err(e) = self.icon.set_tooltip(Some(status)) {
            warn!("cannot set the tray tooltip: {e}");
        }
        if look != self.look {
            match make_icon(look).and_then(|i| {
                self.icon
                    .set_icon(Some(i))
                    .map_err(|e| format!("cannot change the tray icon: {e}"))
            }) {
                Ok(()) => self.look = look,
                Err(e) => warn!("{e}"),
            }
        }
    }
}

fn make_icon(look: Look) -> Result<Icon, String> {
    Icon::from_rgba(icon::rgba(look, icon::SIZE), icon::SIZE, icon::SIZE)
        .map_err(|e| format!("bad tray icon: {e}"))
}

/// `builder.build()`, turning the panic tray-icon raises when the library cannot be loaded into
/// an error, without the default hook printing a backtrace hint to the user's log.
fn build_quietly(builder: TrayIconBuilder) -> Result<TrayIcon, String> {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let built = panic::catch_unwind(AssertUnwindSafe(|| builder.build()));
    panic::set_hook(hook);
    match built {
        Ok(Ok(icon)) => Ok(icon),
        Ok(Err(e)) => Err(format!("cannot create the tray icon: {e}")),
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown error");
            Err(format!(
                "loading libayatana-appindicator3 failed ({})",
                why.lines().next().unwrap_or(why)
            ))
        }
    }
}

/// Whether the dynamic loader can probably find an appindicator library: in `LD_LIBRARY_PATH`,
/// the usual library directories, or the loader cache.
fn appindicator_installed() -> bool {
    let dirs = library_dirs();
    let in_dirs = LIBRARIES
        .iter()
        .any(|lib| dirs.iter().any(|d| is_library(&d.join(lib))));
    in_dirs || in_loader_cache()
}

fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    for base in ["/lib", "/usr/lib", "/usr/local/lib"] {
        dirs.push(Path::new(base).join(&multiarch));
        dirs.push(base.into());
    }
    dirs.extend(["/lib64".into(), "/usr/lib64".into()]);
    dirs
}

/// A real shared object (not an empty or broken file), judged by its ELF magic.
fn is_library(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Libraries outside the usual directories (e.g. other distributions' layouts) are found
/// through `/etc/ld.so.cache`, which stores their names as plain strings.
fn in_loader_cache() -> bool {
    let Ok(cache) = std::fs::read("/etc/ld.so.cache") else {
        return false;
    };
    LIBRARIES.iter().any(|lib| {
        cache
            .windows(lib.len() + 1)
            .any(|w| &w[..lib.len()] == lib.as_bytes() && w[lib.len()] == 0)
    })
}
