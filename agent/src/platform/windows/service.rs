//! The agent as a Windows service: `tether-agent install-service` registers it (LocalSystem,
//! automatic start) to run `tether-agent service --state DIR …`, which the service control
//! manager starts; [`dispatch`] hands control to the SCM and runs the agent until it is told to
//! stop. `uninstall-service` stops and removes it.
#![allow(unsafe_code)] // define_windows_service! expands to an FFI entry point.

use std::ffi::OsString;
use std::path::Path;
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
    Ok(())
}

/// Stops the service if it runs, and removes it.
pub fn uninstall() -> Result<(), ServiceError> {
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
