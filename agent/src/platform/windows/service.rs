//! The agent as a Windows service: `tether-agent install-service` registers it (LocalSystem,
//! automatic start) to run `tether-agent service --state DIR …`, which the service control
//! manager starts; [`dispatch`] hands control to the SCM and runs the agent until it is told to
//! stop. `uninstall-service` stops and removes it. Installing also makes the tray app
//! (`tether-tray.exe`, when it lies beside `tether-agent.exe`) start at every user's sign-in, under
//! the machine's `Run` key; uninstalling removes that.
#![allow(unsafe_code)] // define_windows_service! expands to an FFI entry point.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

pub const SERVICE_NAME: &str = "TetherAgent";
pub const DISPLAY_NAME: &str = "Tether Agent";
/// Where Windows finds the programs to start at every user's sign-in (64-bit view).
pub const RUN_KEY: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
/// The tray app's value under [`RUN_KEY`] in `HKEY_LOCAL_MACHINE`.
pub const RUN_VALUE: &str = "Tether";
/// The tray app's file name, looked for beside `tether-agent.exe`.
pub const TRAY_EXE: &str = "tether-tray.exe";

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{what}: {source} (run it from an administrator's prompt)")]
    Manager {
        what: &'static str,
        source: windows_service::Error,
    },
    #[error("the state directory {dir}: {source}")]
    StateDir { dir: String, source: std::io::Error },
}

fn manager(what: &'static str, source: windows_service::Error) -> ServiceError {
    ServiceError::Manager { what, source }
}

/// Notified when the SCM asks the service to stop (or the machine shuts down).
pub static STOP: Notify = Notify::const_new();

/// Registers the service: `exe service --state DIR ARGS…`, LocalSystem, automatic start, and
/// makes `state` with an ACL for SYSTEM and Administrators only.
pub fn install(exe: &Path, state: &Path, args: &[OsString]) -> Result<(), ServiceError> {
    super::acl::protect_dir(state).map_err(|source| ServiceError::StateDir {
        dir: state.display().to_string(),
        source,
    })?;
    let m = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| manager("opening the service manager", e))?;
    let mut launch = vec![
        OsString::from("service"),
        OsString::from("--state"),
        state.as_os_str().to_owned(),
    ];
    launch.extend(args.iter().cloned());
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_path_buf(),
        launch_arguments: launch,
        dependencies: Vec::new(),
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = m
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(|e| manager("creating the service", e))?;
    let _ = service.set_description("Tether remote support: inventory, health and sessions");
    // The service is what matters; without the tray users approve with `tether-agent approve`.
    match register_tray(exe) {
        Ok(Some(tray)) => tracing::info!(
            "{} starts at every user's sign-in (HKLM\\{RUN_KEY}, value {RUN_VALUE})",
            tray.display()
        ),
        Ok(None) => tracing::info!(
            "no {TRAY_EXE} beside {}: users answer requests with `tether-agent approve` (or run the service with --terminal-approval)",
            exe.display()
        ),
        Err(e) => tracing::warn!(
            "cannot make {TRAY_EXE} start at sign-in (HKLM\\{RUN_KEY}): {e}; start it by hand"
        ),
    }
    Ok(())
}

/// Registers `tether-tray.exe` beside `exe` to start at every user's sign-in; `None` when there
/// is no such file.
fn register_tray(exe: &Path) -> std::io::Result<Option<PathBuf>> {
    let Some(tray) = exe
        .parent()
        .map(|dir| dir.join(TRAY_EXE))
        .filter(|p| p.is_file())
    else {
        return Ok(None);
    };
    let (key, _) =
        winreg::RegKey::predef(winreg::enums::HKEY_LOCAL_MACHINE).create_subkey(RUN_KEY)?;
    // Quoted: the path may hold spaces (C:\Program Files\…).
    key.set_value(RUN_VALUE, &format!("\"{}\"", tray.display()))?;
    Ok(Some(tray))
}

/// Removes the tray app's sign-in entry; nothing to do if it is not there.
fn unregister_tray() -> std::io::Result<()> {
    let key = match winreg::RegKey::predef(winreg::enums::HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(RUN_KEY, winreg::enums::KEY_SET_VALUE)
    {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match key.delete_value(RUN_VALUE) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Stops the service if it runs, and removes it.
pub fn uninstall() -> Result<(), ServiceError> {
    // First, so a half-removed installation does not keep starting the tray.
    if let Err(e) = unregister_tray() {
        tracing::warn!(
            "cannot remove {TRAY_EXE} from sign-in (HKLM\\{RUN_KEY}, value {RUN_VALUE}): {e}"
        );
    }
    let m = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| manager("opening the service manager", e))?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| manager("opening the service", e))?;
    if service
        .query_status()
        .is_ok_and(|s| s.current_state != ServiceState::Stopped)
    {
        let _ = service.stop();
    }
    service
        .delete()
        .map_err(|e| manager("deleting the service", e))
}

type Body = Box<dyn FnOnce() -> i32 + Send>;

/// The stack of the thread the service's body runs on.
const AGENT_STACK: usize = 8 * 1024 * 1024;
static BODY: OnceLock<std::sync::Mutex<Option<Body>>> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

fn status(state: ServiceState, code: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: ServiceExitCode::Win32(code),
        checkpoint: 0,
        wait_hint: Duration::from_secs(10),
        process_id: None,
    }
}

fn service_main(_args: Vec<OsString>) {
    let handle = match service_control_handler::register(SERVICE_NAME, |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            STOP.notify_waiters();
            STOP.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    }) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot register with the service manager: {e}");
            return;
        }
    };
    let _ = handle.set_service_status(status(ServiceState::Running, 0));
    let body = BODY
        .get()
        .and_then(|b| b.lock().ok().and_then(|mut b| b.take()));
    // The service manager's thread has a small stack (1 MiB on Windows, less under Wine), and
    // the agent's future is polled on the thread that runs it: a thread of our own, sized as
    // a main thread is.
    let code = body
        .and_then(|f| {
            std::thread::Builder::new()
                .name("agent".into())
                .stack_size(AGENT_STACK)
                .spawn(f)
                .map_err(|e| tracing::error!("cannot start the agent's thread: {e}"))
                .ok()
        })
        .and_then(|t| t.join().ok())
        .unwrap_or(1);
    let _ = handle.set_service_status(status(ServiceState::Stopped, code as u32));
}

/// Runs `body` (the agent) as the service the SCM started; returns when it has stopped.
pub fn dispatch(body: impl FnOnce() -> i32 + Send + 'static) -> Result<(), ServiceError> {
    let _ = BODY.set(std::sync::Mutex::new(Some(Box::new(body))));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
        manager(
            "starting as a service (is this run by the service manager?)",
            e,
        )
    })
}
