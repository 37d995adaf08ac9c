//! Pseudo-terminals, through portable-pty (which also speaks Windows' ConPTY, so nothing in
//! this interface is Unix-only): a program started on a new terminal, as its session leader,
//! with handles to read what the terminal shows, type into it, resize it, wait for the program
//! and kill it.

use portable_pty::{ChildKiller, CommandBuilder, MasterPty, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PtyError {
    #[error("cannot open a pseudo-terminal: {0}")]
    Open(String),
    #[error("cannot start the shell: {0}")]
    Spawn(String),
    /// The terminal's reader or writer could not be had.
    #[error("{0}")]
    Handle(String),
    #[error("{0}")]
    Resize(String),
}

/// What to start on the terminal: nothing is inherited from the agent's environment.
pub struct PtyCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// A program running on a terminal of its own.
pub struct Pty {
    /// What the terminal shows (ends, or fails, once everything on it has exited).
    pub reader: Box<dyn Read + Send>,
    /// What is typed into it.
    pub writer: Box<dyn Write + Send>,
    pub resizer: PtyResizer,
    pub child: PtyChild,
}

fn size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// Starts `cmd` on a new terminal of `cols` × `rows`.
pub fn spawn(cmd: PtyCommand, cols: u16, rows: u16) -> Result<Pty, PtyError> {
    let mut builder = CommandBuilder::from_argv(cmd.argv.into_iter().map(Into::into).collect());
    builder.env_clear();
    for (k, v) in cmd.env {
        builder.env(k, v);
    }
    builder.cwd(cmd.cwd);
    let pair = native_pty_system()
        .openpty(size(cols, rows))
        .map_err(|e| PtyError::Open(e.to_string()))?;
    let child = pair
        .slave
        .spawn_command(builder)
        .map_err(|e| PtyError::Spawn(e.to_string()))?;
    drop(pair.slave);
    let reader = pair
        .master
        .try_clone_reader()
        .map_err(|e| PtyError::Handle(e.to_string()))?;
    let writer = pair
        .master
        .take_writer()
        .map_err(|e| PtyError::Handle(e.to_string()))?;
    Ok(Pty {
        reader,
        writer,
        resizer: PtyResizer(std::sync::Mutex::new(pair.master)),
        child: PtyChild(child),
    })
}

/// Resizes the terminal.
pub struct PtyResizer(
    // Behind a mutex only to make it `Sync`; resizing is the only use.
    std::sync::Mutex<Box<dyn MasterPty + Send>>,
);

impl PtyResizer {
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), PtyError> {
        match self.0.lock() {
            Ok(m) => m
                .resize(size(cols, rows))
                .map_err(|e| PtyError::Resize(e.to_string())),
            Err(_) => Ok(()),
        }
    }
}

/// The program on the terminal.
pub struct PtyChild(Box<dyn portable_pty::Child + Send + Sync>);

impl PtyChild {
    /// Its process id, which is also its terminal session's id (it leads the session).
    pub fn process_id(&self) -> Option<u32> {
        self.0.process_id()
    }

    /// Something that kills it from elsewhere.
    pub fn killer(&self) -> PtyKiller {
        PtyKiller(self.0.clone_killer())
    }

    /// Waits for it to exit (and reaps it); its exit code.
    pub fn wait(&mut self) -> std::io::Result<u32> {
        self.0.wait().map(|s| s.exit_code())
    }
}

/// Kills the program on a terminal.
pub struct PtyKiller(Box<dyn ChildKiller + Send + Sync>);

impl PtyKiller {
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
}
