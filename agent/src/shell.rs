//! Commands and shells for a session (shell permission): a login shell on a real
//! pseudo-terminal (portable-pty), or one command with its stdout and stderr piped. Output goes
//! into the session's bounded writer channel, so a command that floods output is slowed down to
//! what the technician reads (the channel fills, the reader blocks, the pipe fills, the command
//! waits) instead of being buffered without bound.

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tether_protocol::session::{OutStream, ToViewer};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::warn;

/// How the shell or command ended, for the audit record.
pub type Ended = tokio::sync::oneshot::Receiver<ToViewer>;

pub struct Shell {
    // Behind a mutex only to make the shell `Sync`; resizing is the only use.
    master: std::sync::Mutex<Box<dyn MasterPty + Send>>,
    input: mpsc::Sender<Vec<u8>>,
    killer: Box<dyn portable_pty::ChildKiller + Send + Sync>,
}

fn size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows: rows.clamp(2, 1000),
        cols: cols.clamp(10, 1000),
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// The login shell of `user`, or of the agent's own user.
fn shell_command(user: Option<&str>) -> Result<CommandBuilder, String> {
    let me = tether_net::local::current_uid();
    let mut cmd = match user {
        Some(u) if !u.is_empty() => {
            if u.starts_with('-') || u.contains(['/', '\0', ' ']) {
                return Err(format!("{u:?} is not a user name"));
            }
            let uid = crate::ipc::parse_user(u)?;
            if uid == me {
                own_shell()
            } else if me != 0 {
                return Err(format!(
                    "the agent does not run as root, so it cannot open a shell as {u}"
                ));
            } else {
                let mut c = CommandBuilder::new("runuser");
                c.args(["-l", u]);
                c
            }
        }
        _ => own_shell(),
    };
    cmd.env("TERM", "xterm-256color");
    Ok(cmd)
}

fn own_shell() -> CommandBuilder {
    let sh = ["/bin/bash", "/bin/sh"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/bin/sh");
    let mut c = CommandBuilder::new(sh);
    c.arg("-l");
    if let Some(home) = std::env::var_os("HOME") {
        c.cwd(home);
    }
    c
}

impl Shell {
    /// Starts the shell; its output and then its exit go to `out`.
    /// With `transcript`, the terminal output is also copied there (a recorded shell).
    pub fn open(
        cols: u16,
        rows: u16,
        user: Option<&str>,
        out: mpsc::Sender<ToViewer>,
        transcript: Option<mpsc::Sender<Vec<u8>>>,
    ) -> Result<(Shell, Ended), String> {
        let cmd = shell_command(user)?;
        let pair = native_pty_system()
            .openpty(size(cols, rows))
            .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        let mut child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| format!("cannot start the shell: {e}"))?;
        drop(pair.slave);
        let killer = child.clone_killer();
        let mut reader = pair.master.try_clone_reader().map_err(|e| e.to_string())?;
        let mut writer = pair.master.take_writer().map_err(|e| e.to_string())?;
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
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            // Linux reports EIO once the shell and everything on its terminal have exited.
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
            let status = child.wait();
            let exited = match status {
                Ok(s) => ToViewer::Exited {
                    code: Some(s.exit_code() as i32),
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
            let _ = out.blocking_send(exited.clone());
            let _ = ended_tx.send(exited);
        });
        Ok((
            Shell {
                master: std::sync::Mutex::new(pair.master),
                input,
                killer,
            },
            ended,
        ))
    }

    /// The sender for keystrokes (awaiting it outside any borrow of the shell).
    pub fn input(&self) -> mpsc::Sender<Vec<u8>> {
        self.input.clone()
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        if let Ok(m) = self.master.lock()
            && let Err(e) = m.resize(size(cols, rows))
        {
            warn!("resizing the terminal: {e}");
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
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

fn kill_group(pgid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs `argv` in its own process group with no stdin; output and then the exit go to `out`.
pub fn exec(
    argv: &[String],
    timeout: Option<Duration>,
    out: mpsc::Sender<ToViewer>,
) -> Result<(Exec, Ended), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.current_dir(home);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
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
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let timed_out = waited.is_none();
        if timed_out && let Some(pgid) = pgid {
            kill_group(pgid);
        }
        let status = match waited {
            Some(s) => s,
            None => child.wait().await,
        };
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
        use std::os::unix::process::ExitStatusExt;
        let exited = match status {
            Ok(s) => ToViewer::Exited {
                code: s.code(),
                signal: s.signal(),
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
