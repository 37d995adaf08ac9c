//! Commands and shells for a session (shell permission): a login shell on a real
//! pseudo-terminal (the platform's, [`crate::platform::pty`]), or one command with its stdout and stderr piped. Output goes
//! into the session's bounded writer channel, so a command that floods output is slowed down to
//! what the technician reads (the channel fills, the reader blocks, the pipe fills, the command
//! waits) instead of being buffered without bound.
//!
//! Both run as the session's account ([`crate::account::RunAs`]): the desktop user unless the
//! grant carries the root permission, with an environment of their own (nothing inherited from
//! the agent). A command runs in its own process group, and the whole group is killed when the
//! command ends (before it is reaped, so the group id cannot have been reused), when it times
//! out and when the session ends: nothing it started in the background outlives it. A shell's
//! whole terminal session (every job the shell started) is killed when the shell ends or the
//! session does.

use crate::account::{AccountError, RunAs};
use crate::platform::process::{
    adopt, exit_signal, find_program, kill_group, kill_session, own_process_group, wait_exited,
};
use crate::platform::pty::{self, PtyCommand, PtyError, PtyKiller, PtyResizer};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tether_protocol::session::{OutStream, ToViewer};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::warn;

/// Why a shell or command did not start: one line for the technician.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Pty(#[from] PtyError),
    #[error("empty command")]
    EmptyCommand,
    #[error("cannot run {program}: {source}")]
    CannotRun {
        program: String,
        source: std::io::Error,
    },
}

/// How the shell or command ended, for the audit record.
pub type Ended = tokio::sync::oneshot::Receiver<ToViewer>;

pub struct Shell {
    terminal: PtyResizer,
    input: mpsc::Sender<Vec<u8>>,
    killer: PtyKiller,
    /// The shell's pid, which is its terminal session's id (it leads its terminal's session).
    sid: Option<i32>,
    /// Set once the shell was reaped: its session id may then belong to someone else.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The terminal's size as (cols, rows), within what a terminal can sensibly be.
fn size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(10, 1000), rows.clamp(2, 1000))
}

/// The login shell of the session's account, switched to it when the agent is root.
fn shell_command(who: &RunAs) -> Result<PtyCommand, ShellError> {
    let shell = who.account.login_shell();
    let mut argv: Vec<String> = who.wrapper()?.unwrap_or_default();
    argv.push(shell.display().to_string());
    argv.push("-l".into());
    let mut env: Vec<(String, String)> = who
        .account
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("TERM".into(), "xterm-256color".into()));
    Ok(PtyCommand {
        argv,
        env,
        cwd: who.account.start_dir(),
    })
}

impl Shell {
    /// Starts the shell; its output and then its exit go to `out`.
    /// With `transcript`, the terminal output is also copied there (a recorded shell).
    pub fn open(
        cols: u16,
        rows: u16,
        who: &RunAs,
        out: mpsc::Sender<ToViewer>,
        transcript: Option<mpsc::Sender<Vec<u8>>>,
    ) -> Result<(Shell, Ended), ShellError> {
        let cmd = shell_command(who)?;
        let (cols, rows) = size(cols, rows);
        let pty::Pty {
            mut reader,
            mut writer,
            resizer,
            mut child,
        } = pty::spawn(cmd, cols, rows)?;
        let killer = child.killer();
        if let Some(pid) = child.process_id() {
            adopt(pid);
        }
        let sid = child.process_id().and_then(|p| i32::try_from(p).ok());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reaped = done.clone();
        let (input, mut input_rx) = mpsc::channel::<Vec<u8>>(64);
        std::thread::spawn(move || {
            while let Some(bytes) = input_rx.blocking_recv() {
                if writer
                    .write_all(&bytes)
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let status_out = out.clone();
        let reading = std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            // Linux reports EIO once everything on the terminal has exited.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // A recorded shell waits for its transcript like for its viewer: what the
                // technician saw is what the relay keeps.
                if let Some(t) = &transcript
                    && t.blocking_send(buf[..n].to_vec()).is_err()
                {
                    break;
                }
                let msg = ToViewer::Output {
                    stream: OutStream::Terminal,
                    data: buf[..n].to_vec(),
                };
                if out.blocking_send(msg).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            // Once the shell exits (not yet reaped, so its session id cannot be reused), its
            // jobs go with it: a background job would otherwise outlive the session, and keep
            // the terminal open so the exit were never reported.
            if let Some(sid) = sid {
                wait_exited(sid);
                kill_session(sid);
            }
            let status = child.wait();
            reaped.store(true, std::sync::atomic::Ordering::SeqCst);
            // Everything the terminal showed goes out before the exit status.
            let _ = reading.join();
            let exited = match status {
                Ok(code) => ToViewer::Exited {
                    code: Some(code as i32),
                    signal: None,
                    timed_out: false,
                },
                Err(e) => {
                    warn!("shell wait: {e}");
                    ToViewer::Exited {
                        code: None,
                        signal: None,
                        timed_out: false,
                    }
                }
            };
            let _ = status_out.blocking_send(exited.clone());
            let _ = ended_tx.send(exited);
        });
        Ok((
            Shell {
                terminal: resizer,
                input,
                killer,
                sid,
                done,
            },
            ended,
        ))
    }

    /// The sender for keystrokes (awaiting it outside any borrow of the shell).
    pub fn input(&self) -> mpsc::Sender<Vec<u8>> {
        self.input.clone()
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = size(cols, rows);
        if let Err(e) = self.terminal.resize(cols, rows) {
            warn!("resizing the terminal: {e}");
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Some(sid) = self.sid
            && !self.done.load(std::sync::atomic::Ordering::SeqCst)
        {
            kill_session(sid);
        }
        let _ = self.killer.kill();
    }
}

/// A running command; dropping it kills its process group.
pub struct Exec {
    pgid: Option<i32>,
    /// Set once the command was reaped: its group id may then belong to someone else.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Exec {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid
            && !self.done.load(std::sync::atomic::Ordering::SeqCst)
        {
            kill_group(pgid);
        }
    }
}

/// Runs `argv` in its own process group with no stdin; output and then the exit go to `out`.
pub fn exec(
    argv: &[String],
    timeout: Option<Duration>,
    who: &RunAs,
    out: mpsc::Sender<ToViewer>,
) -> Result<(Exec, Ended), ShellError> {
    let program = argv.first().ok_or(ShellError::EmptyCommand)?;
    let cannot_run = |source| ShellError::CannotRun {
        program: program.clone(),
        source,
    };
    let env = who.account.env();
    let mut full = match who.wrapper()? {
        Some(wrapper) => {
            // setpriv would start and then fail to find it: say so the way a direct start does.
            let path = env
                .iter()
                .find(|(k, _)| *k == "PATH")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            find_program(program, path).map_err(cannot_run)?;
            wrapper
        }
        None => Vec::new(),
    };
    full.extend(argv.iter().cloned());
    let (first, rest) = full.split_first().ok_or(ShellError::EmptyCommand)?;
    let mut cmd = tokio::process::Command::new(first);
    cmd.args(rest)
        .env_clear()
        .envs(env)
        .current_dir(who.account.start_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    own_process_group(&mut cmd);
    let mut child = cmd.spawn().map_err(cannot_run)?;
    if let Some(pid) = child.id() {
        adopt(pid);
    }
    let pgid = child.id().map(|p| p as i32);
    let pump = |stream: OutStream, mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let out = out.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let msg = ToViewer::Output {
                    stream,
                    data: buf[..n].to_vec(),
                };
                if out.send(msg).await.is_err() {
                    break;
                }
            }
        })
    };
    let stdout = child
        .stdout
        .take()
        .map(|s| pump(OutStream::Stdout, Box::new(s)));
    let stderr = child
        .stderr
        .take()
        .map(|s| pump(OutStream::Stderr, Box::new(s)));
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaped = done.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        // Wait for the command to exit without reaping it, so that its process group id stays
        // its own while the group is killed.
        let exited = async {
            if let Some(pid) = pgid {
                let _ = tokio::task::spawn_blocking(move || wait_exited(pid)).await;
            }
        };
        let timed_out = match timeout {
            Some(t) => tokio::time::timeout(t, exited).await.is_err(),
            None => {
                exited.await;
                false
            }
        };
        // On a timeout this kills the command; after its exit, whatever it left running in
        // the background (`sleep 902 &`), which would otherwise outlive the session.
        if let Some(pgid) = pgid {
            kill_group(pgid);
        }
        let status = child.wait().await;
        reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        // Everything the command wrote goes out before its exit status. A background child it
        // left behind may hold the pipes open: stop reading after a moment rather than never
        // reporting the exit.
        for pump in [stdout, stderr].into_iter().flatten() {
            let abort = pump.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), pump)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let exited = match status {
            Ok(s) => ToViewer::Exited {
                code: s.code(),
                signal: exit_signal(&s),
                timed_out,
            },
            Err(e) => {
                warn!("command wait: {e}");
                ToViewer::Exited {
                    code: None,
                    signal: None,
                    timed_out,
                }
            }
        };
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "command ended");
        let _ = out.send(exited.clone()).await;
        let _ = ended_tx.send(exited);
    });
    Ok((Exec { pgid, done }, ended))
}
