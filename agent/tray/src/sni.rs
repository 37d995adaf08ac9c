//! Whether the desktop shows tray icons at all. libayatana-appindicator3 publishes the icon as a
//! StatusNotifierItem, which only appears when a StatusNotifier *host* (the panel's tray area)
//! is registered with the watcher, `org.kde.StatusNotifierWatcher`, on the session bus. Without
//! one the icon is built but nobody ever sees it, so the tray app shows its status window instead.
//!
//! Asked once, at start: a host that appears later does not move the tray app out of its window
//! (which keeps working as well as the icon would); restarting `tether-tray` picks the icon.

use gtk::gio;
use gtk::glib::{self, ToVariant};

const WATCHER: &str = "org.kde.StatusNotifierWatcher";
const WATCHER_PATH: &str = "/StatusNotifierWatcher";
/// Per D-Bus call: a watcher that hangs must not keep the tray app from starting.
const CALL_TIMEOUT_MS: i32 = 2_000;

/// `Ok` when a StatusNotifier host is registered on the session bus; otherwise why not, as a
/// phrase for the log ("no StatusNotifier watcher on the session bus …").
pub fn host_registered() -> Result<(), String> {
    let bus = gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE)
        .map_err(|e| format!("no D-Bus session bus ({})", e.message()))?;
    let call = |dest: &str, path: &str, iface: &str, method: &str, args: glib::Variant| {
        bus.call_sync(
            Some(dest),
            path,
            iface,
            method,
            Some(&args),
            None,
            gio::DBusCallFlags::NO_AUTO_START,
            CALL_TIMEOUT_MS,
            gio::Cancellable::NONE,
        )
        .map_err(|e| e.message().to_string())
    };
    let owned = call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        (WATCHER,).to_variant(),
    )
    .map_err(|e| format!("cannot ask the session bus for {WATCHER} ({e})"))?;
    if owned.child_value(0).get::<bool>() != Some(true) {
        return Err(format!(
            "no StatusNotifier watcher on the session bus ({WATCHER} has no owner)"
        ));
    }
    let reply = call(
        WATCHER,
        WATCHER_PATH,
        "org.freedesktop.DBus.Properties",
        "Get",
        (WATCHER, "IsStatusNotifierHostRegistered").to_variant(),
    )
    .map_err(|e| format!("cannot read IsStatusNotifierHostRegistered from {WATCHER} ({e})"))?;
    match reply
        .child_value(0)
        .as_variant()
        .and_then(|v| v.get::<bool>())
    {
        Some(true) => Ok(()),
        Some(false) => Err(format!(
            "no StatusNotifier host: {WATCHER} has none registered (the panel shows no tray icons)"
        )),
        None => Err(format!(
            "{WATCHER} answered IsStatusNotifierHostRegistered with {reply}"
        )),
    }
}
