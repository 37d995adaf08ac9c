//! The Wayland desktop: screens, input, pointer and clipboard through `tether-wayland`, the
//! helper the agent starts **as the desktop user, inside the user's session** (the compositor's
//! APIs live on the session bus and the Wayland socket, both the user's alone).
//!
//! Who starts it and how it is found: the agent, on a session's first desktop request, runs the
//! `tether-wayland` next to its own executable (or `TETHER_WAYLAND_HELPER`) through `setpriv`
//! as the session's user, with an environment made of nothing but that session's
//! `XDG_RUNTIME_DIR`, `WAYLAND_DISPLAY` and `DBUS_SESSION_BUS_ADDRESS` ([`SessionEnv`]). They
//! talk over the helper's standard input and output (`tether_protocol::helper`): a pipe has no
//! name, so no other local user can reach the helper or the screen it shares. The helper ends
//! when the agent drops this desktop (the session ended), which ends the compositor's sharing.
//! What is shared with the Windows helper (the process, the untrusted replies, the desktop made
//! of them) is in [`crate::platform::helper`].

mod env;

pub use env::SessionEnv;

use crate::platform::DesktopKind;
use crate::platform::helper::HelperDesktop;
use crate::platform::helper::client::{HelperIoError, Launch, Launched};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Wayland session `env` names, served by `tether-wayland` as its user.
pub fn desktop(env: SessionEnv) -> HelperDesktop {
    HelperDesktop::new(DesktopKind::Wayland, Some(env.uid), Box::new(AsUser(env)))
}

/// Starts `tether-wayland` as the session's user, in the session's environment only.
struct AsUser(SessionEnv);

/// The helper's executable: `TETHER_WAYLAND_HELPER`, else `tether-wayland` beside this one.
fn program() -> Result<PathBuf, HelperIoError> {
    let path = match std::env::var_os("TETHER_WAYLAND_HELPER") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("tether-wayland")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/tether-wayland")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HelperIoError::Unavailable(format!(
            "the Wayland helper {} is missing (it is installed next to tether-agent, or named by TETHER_WAYLAND_HELPER)",
            path.display()
        )))
    }
}

impl Launch for AsUser {
    fn describe(&self) -> String {
        format!("uid {}", self.0.uid)
    }

    fn launch(&self) -> Result<Launched, HelperIoError> {
        let env = &self.0;
        let program = program()?;
        let account = crate::platform::users::Account::lookup(env.uid)
            .map_err(|e| HelperIoError::Spawn(e.to_string()))?;
        let mut cmd = if env.uid == tether_net::local::current_uid() {
            Command::new(&program)
        } else {
            let wrapper = crate::platform::credentials::switch_wrapper(env.uid, account.gid)
                .map_err(|e| HelperIoError::Spawn(e.to_string()))?;
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg(&program);
            c
        };
        // Nothing of the agent's environment: the user's account and the session's names.
        cmd.env_clear();
        for (k, v) in account.env() {
            cmd.env(k, v);
        }
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        for k in ["RUST_LOG", "TETHER_WAYLAND_BACKEND"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| HelperIoError::Spawn(format!("{}: {e}", program.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperIoError::Spawn("no pipes".into()));
        };
        Ok(Launched {
            process: Box::new(child),
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
        })
    }
}
