//! Screen sessions: what a technician may do on a device, the grant the relay signs for it, and
//! the messages technician and agent exchange inside their end-to-end TLS channel.
//!
//! Flow: the technician asks the relay ([`crate::message::TechRequest::OpenSession`]); the relay
//! checks the role, signs a [`SessionGrant`] with its grant-signing key (certified by the
//! organisation CA) and offers it to the agent on a stream it opens
//! ([`RelayStream::SessionOffer`]). When the agent accepts, the relay
//! splices the two streams and never parses another byte: technician (TLS client) and agent (TLS
//! server) run TLS 1.3 end to end over the splice, each authenticating the other with its org
//! certificate. Inside, [`ToAgent`] and [`ToViewer`] messages flow, and [`SessionGate`] on the agent
//! enforces the permissions the grant carries.

use crate::identity::Role;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// ALPN of the end-to-end session TLS inside the relay's splice.
pub const SESSION_ALPN: &[u8] = b"tether-session/1";

/// How long a grant stays valid for the agent to accept it.
pub const GRANT_TTL_MS: i64 = 60_000;

/// Largest text a single input message may type.
pub const MAX_TEXT: usize = 4096;

/// Largest clipboard text carried either way (it must fit a control frame).
pub const MAX_CLIPBOARD: usize = 60 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Permissions {
    pub view: bool,
    pub control: bool,
    pub clipboard: bool,
    /// Run commands and an interactive shell.
    pub shell: bool,
    /// Copy files to and from the device.
    pub files: bool,
    /// Run shells and commands, and touch files, as root instead of the desktop user. Only
    /// with `shell` or `files`; the relay grants it only where the device group's policy allows
    /// it (`allow_root`), and the agent runs as root only when the signed grant says so.
    pub root: bool,
}

impl Permissions {
    const NONE: Self = Self {
        view: false,
        control: false,
        clipboard: false,
        shell: false,
        files: false,
        root: false,
    };
    pub const VIEW: Self = Self {
        view: true,
        ..Self::NONE
    };
    pub const CONTROL: Self = Self {
        view: true,
        control: true,
        ..Self::NONE
    };
    /// View, control and clipboard: what a support session asks for by default.
    pub const FULL: Self = Self {
        view: true,
        control: true,
        clipboard: true,
        ..Self::NONE
    };
    /// A terminal or commands, no screen.
    pub const SHELL: Self = Self {
        shell: true,
        ..Self::NONE
    };
    /// File transfer, no screen.
    pub const FILES: Self = Self {
        files: true,
        ..Self::NONE
    };

    /// Nothing to do: `root` alone is not something to do, only how shell and files run.
    pub fn is_empty(&self) -> bool {
        Self {
            root: false,
            ..*self
        } == Self::NONE
    }

    /// Everything `other` allows, this allows too.
    pub fn contains(&self, other: Permissions) -> bool {
        let covered = |mine: bool, theirs: bool| mine || !theirs;
        covered(self.view, other.view)
            && covered(self.control, other.control)
            && covered(self.clipboard, other.clipboard)
            && covered(self.shell, other.shell)
            && covered(self.files, other.files)
            && covered(self.root, other.root)
    }

    /// What either allows.
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions {
            view: self.view || other.view,
            control: self.control || other.control,
            clipboard: self.clipboard || other.clipboard,
            shell: self.shell || other.shell,
            files: self.files || other.files,
            root: self.root || other.root,
        }
    }

    /// Runs as root on the device (only meaningful with shell or files).
    pub fn as_root(&self) -> bool {
        self.root && (self.shell || self.files)
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![];
        for (on, name) in [
            (self.view, "view"),
            (self.control, "control"),
            (self.clipboard, "clipboard"),
            (self.shell, "shell"),
            (self.files, "files"),
            (self.root, "root"),
        ] {
            if on {
                parts.push(name);
            }
        }
        parts.join(" + ")
    }
}

/// Longest activity text (a command line or a path) carried in a grant and shown to the user.
pub const MAX_ACTIVITY: usize = 1024;

/// What a session is opened for. The user's prompt and banner say it, the audit record keeps it,
/// and the agent holds the session to it where it can be checked: a [`Activity::Command`]
/// session runs that command line and nothing else ([`SessionGate::check`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activity {
    /// The viewer window (`tether connect`).
    #[default]
    Screen,
    Screenshot,
    /// Typing or clicking from the command line (`tether type`, `tether click`).
    Input,
    Clipboard,
    /// An interactive terminal.
    Shell,
    /// One command; `line` as a shell would show it ([`command_line`]), cleaned.
    Command {
        line: String,
    },
    /// Copying to the device, into `path`.
    Push {
        path: String,
    },
    /// Copying `path` from the device.
    Pull {
        path: String,
    },
    /// File transfers not named in advance.
    Files,
}

impl Activity {
    /// The usual activity of a session with these permissions: the screen when it may view,
    /// otherwise input, the clipboard or a shell.
    pub fn for_permissions(p: Permissions) -> Self {
        if p.view {
            Activity::Screen
        } else if p.control {
            Activity::Input
        } else if p.clipboard {
            Activity::Clipboard
        } else if p.shell {
            Activity::Shell
        } else {
            Activity::Files
        }
    }

    /// A command's activity, from its argument vector.
    pub fn command(argv: &[String]) -> Self {
        Activity::Command {
            line: crate::text::clean(&command_line(argv), MAX_ACTIVITY),
        }
    }

    /// The same activity with its text cleaned and bounded (the relay does this to what a
    /// technician sends before signing it).
    pub fn cleaned(&self) -> Self {
        let c = |s: &str| crate::text::clean(s, MAX_ACTIVITY);
        match self {
            Activity::Command { line } => Activity::Command { line: c(line) },
            Activity::Push { path } => Activity::Push { path: c(path) },
            Activity::Pull { path } => Activity::Pull { path: c(path) },
            other => other.clone(),
        }
    }

    /// Whether `p` allows this activity at all.
    pub fn fits(&self, p: Permissions) -> bool {
        match self {
            Activity::Screen | Activity::Screenshot => p.view,
            Activity::Input => p.control,
            Activity::Clipboard => p.clipboard,
            Activity::Shell | Activity::Command { .. } => p.shell,
            Activity::Push { .. } | Activity::Pull { .. } | Activity::Files => p.files,
        }
    }

    /// For the banner: "is running `df -h`" (plain text; the caller never adds markup).
    pub fn doing(&self) -> String {
        match self {
            Activity::Screen => "is connected to your screen".into(),
            Activity::Screenshot => "is taking a screenshot".into(),
            Activity::Input => "is typing or clicking on this computer".into(),
            Activity::Clipboard => "is using your clipboard".into(),
            Activity::Shell => "has a terminal open on this computer".into(),
            Activity::Command { line } => format!("is running: {line}"),
            Activity::Push { path } => format!("is copying files to {path}"),
            Activity::Pull { path } => format!("is copying {path} from this computer"),
            Activity::Files => "is transferring files on this computer".into(),
        }
    }

    /// For the audit record and logs: "command: df -h".
    pub fn describe(&self) -> String {
        match self {
            Activity::Screen => "screen".into(),
            Activity::Screenshot => "screenshot".into(),
            Activity::Input => "input".into(),
            Activity::Clipboard => "clipboard".into(),
            Activity::Shell => "shell".into(),
            Activity::Command { line } => format!("command: {line}"),
            Activity::Push { path } => format!("push to {path}"),
            Activity::Pull { path } => format!("pull {path}"),
            Activity::Files => "files".into(),
        }
    }
}

/// A command line as a shell would show it: arguments of plain characters as they are, others
/// single-quoted.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Signed by the relay (with its grant-signing key, which the organisation CA certified) and
/// checked by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub session_id: String,
    pub device_id: String,
    pub technician: String,
    pub role: Role,
    pub permissions: Permissions,
    pub reason: String,
    pub ticket: String,
    pub issued_at_unix_ms: i64,
    pub expires_at_unix_ms: i64,
    /// The device's group allows unattended access and the technician is an admin: the agent
    /// starts the session without asking (it still shows the banner).
    pub unattended: bool,
    /// The device's group records shells: the agent sends the terminal output of every shell
    /// in this session to the relay, which keeps it as a transcript.
    pub record_shell: bool,
    /// What the session is for (checked against the permissions by the relay and the agent).
    pub activity: Activity,
}

/// First frame of a stream the relay opens on an agent's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayStream {
    /// `grant` is the encoded [`SessionGrant`]; `signature` is ECDSA P-256 SHA-256 (ASN.1) over
    /// it, made with the relay's grant-signing key; `signer_cert` is that key's certificate
    /// (DER), which the organisation CA issued with the grant-signer extended key usage. The
    /// agent checks the certificate against the CA it pinned, then the signature against the
    /// certificate: the CA key itself signs only certificates.
    SessionOffer {
        #[serde(with = "serde_bytes")]
        grant: Vec<u8>,
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
        #[serde(with = "serde_bytes")]
        signer_cert: Vec<u8>,
    },
    /// A technician's message for the user (`tether say`); answered by one [`MessageReply`].
    Message(UserMessage),
    /// The technician ends their engagement for `ticket` (technician and role as the relay
    /// authenticated them); answered by an [`EngagementReply`]. Unsigned: it only takes access
    /// away, which the relay can do anyway by not brokering.
    EndEngagement {
        technician: String,
        role: Role,
        ticket: String,
    },
}

/// Whether [`RelayStream::EndEngagement`] found an engagement to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngagementReply {
    Ended,
    NoneOpen,
}

/// Longest message or reply, in bytes.
pub const MAX_MESSAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMessage {
    pub id: String,
    /// From the technician's certificate (filled in by the relay).
    pub technician: String,
    pub role: Role,
    pub text: String,
    /// How long the user has to reply.
    pub wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageReply {
    Replied {
        text: String,
    },
    /// Shown, but the user did not answer in time (or closed it).
    NoReply,
    /// No tray app to show it.
    NoTray,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferReply {
    Accept {
        /// Started without asking, by the unattended policy.
        unattended: bool,
        /// The engagement it joins (the id of the session that began it; equal to this
        /// session's own id when the user was asked now). `None` when unattended.
        engagement: Option<String>,
    },
    Refuse {
        kind: RefuseKind,
        /// One line for the technician.
        message: String,
    },
}

/// Why an agent refused an offer (the relay's audit decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseKind {
    /// The grant failed a check (signature, device, expiry).
    Invalid,
    /// The user said no, or nobody could be asked.
    Denied,
    /// Nobody answered the prompt in time.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayInfo {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub primary: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PixelFormat {
    /// 4 bytes per pixel: blue, green, red, unused (X11's native order).
    Bgrx8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Zstd,
    /// zstd of the pixels XOR the viewer's current pixels of the same rectangle: a small change
    /// leaves mostly zeros, which compress far better than the pixels themselves. Valid because
    /// the stream is lossless and ordered, so both sides hold the same previous frame.
    ZstdXor,
    /// One H.264 access unit (Annex B) covering the whole screen; lossy. Used only while large
    /// parts of the screen move, and followed by a lossless refresh when the motion stops.
    H264,
    /// zstd of the rectangle's [`crate::palette`] form (its colours and packed indices): text
    /// and flat interface areas, lossless. Sent only to viewers that announced
    /// [`stream_feature::PALETTE`].
    ZstdPalette,
    /// Rows the viewer already has, copied within its picture ([`crate::scroll::CopyRows`]:
    /// the rectangle is the destination, the data the source row). Sent only to viewers that
    /// announced [`stream_feature::COPY_RECT`].
    CopyRect,
    /// The rectangle's [`crate::palette`] form as it is, without zstd: for the smallest ones (a
    /// solid strip, one typed character), where zstd's own frame costs more than it saves. Sent
    /// only to viewers that announced [`stream_feature::RAW_PALETTE`].
    Palette,
    /// The rectangle's packed palette form ([`crate::indexed`]), which may name the last
    /// palette sent. Sent only to viewers that announced [`stream_feature::COMPACT`].
    Indexed,
    /// zstd of [`Self::Indexed`]'s form.
    ZstdIndexed,
    /// zstd of the pixels' [`crate::planes`] (grey turns two planes to zeros).
    ZstdPlanes,
    /// zstd of the planes of the pixels XOR the viewer's: [`Self::ZstdXor`] for anti-aliased
    /// text, whose changes are grey.
    ZstdXorPlanes,
}

/// What a viewer can take beyond the base encodings, announced in [`ToAgent::StreamOptions`]
/// before [`ToAgent::StartStream`]. An agent that does not know the message skips it and sends
/// the base encodings; one that knows it ignores features it does not know.
pub mod stream_feature {
    /// [`super::Compression::ZstdPalette`] rectangles.
    pub const PALETTE: &str = "palette";
    /// [`super::Compression::CopyRect`] rectangles (scrolling).
    pub const COPY_RECT: &str = "copy-rect";
    /// [`super::Compression::CopyRect`] rectangles whose source is also across (moved windows:
    /// 8 bytes of data, [`crate::scroll::CopyRows::to_rect`]).
    pub const MOVE_RECT: &str = "move-rect";
    /// [`super::Compression::Palette`] rectangles.
    pub const RAW_PALETTE: &str = "raw-palette";
    /// [`super::ToViewer::Delta`] frames and [`super::Compression::Indexed`],
    /// [`super::Compression::ZstdIndexed`], [`super::Compression::ZstdPlanes`] and
    /// [`super::Compression::ZstdXorPlanes`] rectangles: fewer bytes for each small update.
    pub const COMPACT: &str = "compact";
    /// Most features one announcement carries (more are ignored).
    pub const MAX: usize = 32;
}

/// A whole screen image, rows packed (stride = width × 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub compression: Compression,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MouseButton {
    Left,
    Middle,
    Right,
}

/// Keys the viewer sends by name (everything printable goes as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    Return,
    Tab,
    Backspace,
    Escape,
    Delete,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    Control,
    Alt,
    Shift,
    Meta,
    F(u8),
}

impl Key {
    /// The keysym of a named key of the older key model (`tether key`, the toolbar's combos).
    pub fn keysym(self) -> Option<u32> {
        use crate::keys::{function_key, sym};
        Some(match self {
            Key::Return => sym::RETURN,
            Key::Tab => sym::TAB,
            Key::Backspace => sym::BACKSPACE,
            Key::Escape => sym::ESCAPE,
            Key::Delete => sym::DELETE,
            Key::Up => sym::UP,
            Key::Down => sym::DOWN,
            Key::Left => sym::LEFT,
            Key::Right => sym::RIGHT,
            Key::Home => sym::HOME,
            Key::End => sym::END,
            Key::PageUp => sym::PAGE_UP,
            Key::PageDown => sym::PAGE_DOWN,
            Key::Control => sym::CONTROL_L,
            Key::Alt => sym::ALT_L,
            Key::Shift => sym::SHIFT_L,
            Key::Meta => sym::SUPER_L,
            Key::F(n) => return function_key(n),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    MouseMove {
        x: i32,
        y: i32,
    },
    Button {
        button: MouseButton,
        down: bool,
    },
    Click {
        x: i32,
        y: i32,
        button: MouseButton,
    },
    Scroll {
        dx: i32,
        dy: i32,
    },
    Key {
        key: Key,
        down: bool,
    },
    /// Unicode text, typed as is.
    Text(String),
    /// Ctrl+Alt+Del, Alt+Tab and friends from the viewer's toolbar.
    Combo(Vec<Key>),
    /// A key down or up with its keysym and physical position ([`crate::keys`]): what the
    /// viewer sends for every key the technician presses.
    KeyEvent(crate::keys::KeyEvent),
    /// Release every key this session still holds down (the viewer lost focus).
    ReleaseKeys,
}

/// Technician → agent, inside the session TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    Screenshot {
        display: u32,
    },
    Input(InputEvent),
    /// Stream `display` (restarting with a full frame if a stream runs), keeping at most
    /// `max_in_flight` unacknowledged frames.
    StartStream {
        display: u32,
        max_in_flight: u8,
        /// The viewer can decode [`Compression::H264`].
        h264: bool,
    },
    StopStream,
    /// The viewer has applied every frame up to `seq`.
    FrameAck {
        seq: u64,
    },
    /// Put text on the device's clipboard (clipboard permission).
    SetClipboard {
        text: String,
    },
    /// Ask for the device's clipboard text (clipboard permission).
    GetClipboard,
    Bye,
    /// An interactive shell on a pseudo-terminal (shell permission). It runs as the desktop
    /// user, or as root with the [`Permissions::root`] permission; `user` cannot choose anyone
    /// else (kept for older clients: `None`, or the name of that same account). Output comes as
    /// [`ToViewer::Output`], the end as [`ToViewer::Exited`].
    ShellOpen {
        cols: u16,
        rows: u16,
        user: Option<String>,
    },
    /// Keystrokes for the shell (at most [`MAX_SHELL_INPUT`] bytes; Ctrl-C is byte 3).
    ShellInput(#[serde(with = "serde_bytes")] Vec<u8>),
    ShellResize {
        cols: u16,
        rows: u16,
    },
    /// Run one command without a terminal (shell permission): its output streams back as
    /// [`ToViewer::Output`] and ends with [`ToViewer::Exited`].
    Exec {
        argv: Vec<String>,
        timeout_ms: Option<u64>,
    },
    /// Receive a file (files permission): answered by [`ToViewer::PutReady`] with the offset to
    /// resume from, then [`ToAgent::FileChunk`]s up to `size`, then [`ToViewer::PutDone`].
    PutStart(PutStart),
    FileChunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// What is at `path` (files permission): [`ToViewer::StatReply`].
    Stat {
        path: String,
    },
    /// Send the file at `path` from `offset` (files permission): [`ToViewer::FileChunk`]s, then
    /// [`ToViewer::FileEnd`] with the SHA-256 of the whole file.
    GetStart {
        path: String,
        offset: u64,
    },
    /// The viewer is there: sent every [`HELD_KEYS_KEEPALIVE_MS`] while it holds keys down on
    /// the device, so the agent lets go of them when the viewer falls silent (a killed viewer's
    /// connection is noticed by the relay only at its idle timeout).
    KeepAlive,
    /// What the viewer decodes beyond the base encodings ([`stream_feature`]), for the streams
    /// it starts from now on.
    StreamOptions(Vec<String>),
}

/// How often a viewer holding keys says it is still there ([`ToAgent::KeepAlive`]).
pub const HELD_KEYS_KEEPALIVE_MS: u64 = 400;
/// How long the agent keeps keys down without a word from the viewer.
pub const HELD_KEYS_SILENCE_MS: u64 = 1_500;

/// Largest [`ToAgent::ShellInput`].
pub const MAX_SHELL_INPUT: usize = 16 * 1024;
/// Largest file chunk the technician sends (it must fit a control frame).
pub const MAX_PUT_CHUNK: usize = 48 * 1024;
/// Largest file chunk the agent sends.
pub const MAX_GET_CHUNK: usize = 256 * 1024;
/// Most entries one [`ToViewer::StatReply`] lists.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest command line (all arguments) for [`ToAgent::Exec`].
pub const MAX_ARGV_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutStart {
    /// The destination the technician named (a directory on the device, absolute).
    pub root: String,
    /// Where under `root` this file goes: relative, no `..`, checked by the agent
    /// ([`crate::paths::relative`]); nothing is written through a symlink.
    pub rel: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file, checked before it takes its final name.
    pub sha256: String,
    /// Unix permission bits (masked to 0o777).
    pub mode: u32,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutStream {
    Stdout,
    Stderr,
    /// The shell's terminal (both, interleaved as the terminal shows them).
    Terminal,
}

/// A path on the device, for a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteEntry {
    File {
        size: u64,
        mode: u32,
    },
    /// Every file below, relative to the directory (directories end with `/`).
    Dir {
        entries: Vec<DirEntry>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub rel: String,
    pub size: u64,
    pub mode: u32,
    pub dir: bool,
}

/// One encoded rectangle of a frame update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedRect {
    pub rect: crate::tiles::Rect,
    pub compression: Compression,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The changed parts of a streamed screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameUpdate {
    pub seq: u64,
    pub display: u32,
    pub width: u32,
    pub height: u32,
    pub rects: Vec<EncodedRect>,
    /// Time the agent spent capturing, diffing and encoding, in microseconds.
    pub encode_us: u32,
}

/// [`FrameUpdate`] in fewer bytes, sent instead of it to viewers that announced
/// [`stream_feature::COMPACT`]: a typed character's update carries 7 bytes fewer (of 25 beside
/// its pixels). [`Deltas`] turns one into the other on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameDelta {
    /// With `size`, the frame's sequence number; without, how much it grew since the last frame
    /// (1, as a rule: one byte).
    pub seq: u64,
    pub display: u32,
    /// The screen's width and height, given in a stream's first frame and when they change.
    pub size: Option<(u32, u32)>,
    pub rects: Vec<EncodedRect>,
    /// Time the agent spent on the frame, in units of 10 µs.
    pub encode_10us: u32,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeltaError {
    #[error("a compact frame came before any frame gave the screen's size")]
    NoSize,
    #[error("a compact frame's sequence number overflows")]
    SeqOverflow,
}

/// What [`FrameDelta`]s leave out (the last sequence number and screen size), kept by the agent
/// to make them and by the viewer to read them. The stream is ordered and lossless, so both
/// hold the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas {
    last: Option<(u64, u32, u32)>,
}

impl Deltas {
    pub fn compact(&mut self, f: FrameUpdate) -> FrameDelta {
        let (seq, size) = match self.last {
            Some((s, w, h)) if (w, h) == (f.width, f.height) && f.seq >= s => (f.seq - s, None),
            _ => (f.seq, Some((f.width, f.height))),
        };
        self.last = Some((f.seq, f.width, f.height));
        FrameDelta {
            seq,
            display: f.display,
            size,
            rects: f.rects,
            encode_10us: f.encode_us / 10,
        }
    }

    /// The [`FrameUpdate`] `d` stands for. Untrusted: a frame without a size before any gave
    /// one is an error.
    pub fn expand(&mut self, d: FrameDelta) -> Result<FrameUpdate, DeltaError> {
        let (seq, width, height) = match (d.size, self.last) {
            (Some((w, h)), _) => (d.seq, w, h),
            (None, Some((s, w, h))) => (s.checked_add(d.seq).ok_or(DeltaError::SeqOverflow)?, w, h),
            (None, None) => return Err(DeltaError::NoSize),
        };
        self.last = Some((seq, width, height));
        Ok(FrameUpdate {
            seq,
            display: d.display,
            width,
            height,
            rects: d.rects,
            encode_us: d.encode_10us.saturating_mul(10),
        })
    }
}

/// Agent → technician, inside the session TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToViewer {
    Ready {
        session_id: String,
        displays: Vec<DisplayInfo>,
        permissions: Permissions,
    },
    Screenshot(Image),
    /// The input event was applied.
    Done,
    Frame(FrameUpdate),
    /// Pointer position, sent apart from pixels: moving the mouse resends no tiles.
    Cursor {
        x: i32,
        y: i32,
    },
    /// The pointer's image, sent when it changes (an arrow, a text beam…). `rgba` is
    /// premultiplied RGBA, `width × height × 4` bytes, at most 256×256.
    CursorShape {
        width: u16,
        height: u16,
        hot_x: u16,
        hot_y: u16,
        #[serde(with = "serde_bytes")]
        rgba: Vec<u8>,
    },
    /// The device's clipboard text (answer to [`ToAgent::GetClipboard`]).
    Clipboard {
        text: String,
    },
    Error {
        message: String,
    },
    Bye {
        reason: String,
    },
    Output {
        stream: OutStream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The shell or command ended: its exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
    PutReady {
        offset: u64,
    },
    PutDone {
        size: u64,
        sha256: String,
    },
    StatReply(RemoteEntry),
    FileChunk(#[serde(with = "serde_bytes")] Vec<u8>),
    FileEnd {
        size: u64,
        sha256: String,
    },
    /// Sent when the agent has had nothing else to send for [`KEEPALIVE_MS`]: a technician that
    /// hears nothing for [`SILENT_MS`] knows the device is gone (the relay only learns of a
    /// vanished agent when its heartbeats stop, seconds later).
    KeepAlive,
    /// A [`FrameUpdate`] as a [`FrameDelta`] (viewers that announced
    /// [`stream_feature::COMPACT`]).
    Delta(FrameDelta),
}

impl crate::codec::Extensible for ToAgent {
    const KNOWN: u32 = 18;
}

impl crate::codec::Extensible for ToViewer {
    const KNOWN: u32 = 18;
}

/// How long an agent stays silent in a session before it sends [`ToViewer::KeepAlive`].
pub const KEEPALIVE_MS: u64 = 400;
/// How long a technician waits without hearing from the device before calling it gone.
pub const SILENT_MS: u64 = 1_500;

/// Codes the relay resets the technician's side of a session channel with, so the technician
/// learns why the device's side ended (the relay cannot speak inside the end-to-end TLS). Any
/// other code means only that the channel broke.
pub mod splice_reset {
    /// The device went quiet (nothing for longer than [`super::SILENT_MS`]) or its connection
    /// to the relay died.
    pub const DEVICE_LOST: u32 = 1;
    /// The device's certificate was revoked during the session.
    pub const DEVICE_REVOKED: u32 = 2;
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GrantError {
    #[error("session grant is for device {0}, not this one")]
    WrongDevice(String),
    #[error("session grant has expired")]
    Expired,
    #[error("role {0} may not start sessions")]
    RoleTooLow(Role),
    #[error("session grant asks for nothing to do")]
    NoPermission,
    #[error("session grant's activity ({0}) is not allowed by its permissions")]
    ActivityMismatch(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Denied {
    #[error("view-only session: input is not allowed")]
    ViewOnly,
    #[error("this session may not view the screen")]
    NoView,
    #[error("text of {0} bytes is over the {MAX_TEXT}-byte limit")]
    TextTooLong(usize),
    #[error("this session may not use the clipboard")]
    NoClipboard,
    #[error("clipboard text of {0} bytes is over the {MAX_CLIPBOARD}-byte limit")]
    ClipboardTooLong(usize),
    #[error("this session may not run commands or a shell")]
    NoShell,
    #[error("this session may not transfer files")]
    NoFiles,
    #[error("message over its size limit")]
    TooLarge,
    #[error("this session was approved for one command ({0}), not this")]
    NotTheCommand(String),
}

/// The agent's check of a grant and of every message in the session it allows.
#[derive(Debug, Clone)]
pub struct SessionGate {
    grant: SessionGrant,
}

impl SessionGate {
    /// Accepts a grant whose signature the caller has verified.
    pub fn new(grant: SessionGrant, device_id: &str, now_unix_ms: i64) -> Result<Self, GrantError> {
        if grant.device_id != device_id {
            return Err(GrantError::WrongDevice(grant.device_id));
        }
        if now_unix_ms > grant.expires_at_unix_ms {
            return Err(GrantError::Expired);
        }
        if grant.role == Role::Viewer {
            return Err(GrantError::RoleTooLow(grant.role));
        }
        if grant.permissions.is_empty() {
            return Err(GrantError::NoPermission);
        }
        if !grant.activity.fits(grant.permissions) {
            return Err(GrantError::ActivityMismatch(grant.activity.describe()));
        }
        Ok(Self { grant })
    }

    pub fn grant(&self) -> &SessionGrant {
        &self.grant
    }

    /// May this message be acted on?
    pub fn check(&self, msg: &ToAgent) -> Result<(), Denied> {
        let p = self.grant.permissions;
        match msg {
            ToAgent::Screenshot { .. } | ToAgent::StartStream { .. } if !p.view => {
                Err(Denied::NoView)
            }
            ToAgent::Input(_) if !p.control => Err(Denied::ViewOnly),
            ToAgent::Input(InputEvent::Text(t)) if t.len() > MAX_TEXT => {
                Err(Denied::TextTooLong(t.len()))
            }
            ToAgent::SetClipboard { .. } | ToAgent::GetClipboard if !p.clipboard => {
                Err(Denied::NoClipboard)
            }
            ToAgent::SetClipboard { text } if text.len() > MAX_CLIPBOARD => {
                Err(Denied::ClipboardTooLong(text.len()))
            }
            ToAgent::ShellOpen { .. }
            | ToAgent::ShellInput(_)
            | ToAgent::ShellResize { .. }
            | ToAgent::Exec { .. }
                if !p.shell =>
            {
                Err(Denied::NoShell)
            }
            ToAgent::ShellInput(b) if b.len() > MAX_SHELL_INPUT => Err(Denied::TooLarge),
            ToAgent::Exec { argv, .. }
                if argv.is_empty()
                    || argv.iter().map(String::len).sum::<usize>() > MAX_ARGV_BYTES =>
            {
                Err(Denied::TooLarge)
            }
            // What the user saw in the prompt and the banner is what runs.
            ToAgent::Exec { argv, .. } => match &self.grant.activity {
                Activity::Command { line } if Activity::command(argv) != self.grant.activity => {
                    Err(Denied::NotTheCommand(line.clone()))
                }
                _ => Ok(()),
            },
            ToAgent::ShellOpen { .. } => match &self.grant.activity {
                Activity::Command { line } => Err(Denied::NotTheCommand(line.clone())),
                _ => Ok(()),
            },
            ToAgent::PutStart(_)
            | ToAgent::FileChunk(_)
            | ToAgent::Stat { .. }
            | ToAgent::GetStart { .. }
                if !p.files =>
            {
                Err(Denied::NoFiles)
            }
            ToAgent::FileChunk(b) if b.len() > MAX_PUT_CHUNK => Err(Denied::TooLarge),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, permissions: Permissions) -> SessionGrant {
        SessionGrant {
            session_id: "s1".into(),
            device_id: "d1".into(),
            technician: "ana".into(),
            role,
            permissions,
            reason: "printer offline".into(),
            ticket: "HD-1042".into(),
            issued_at_unix_ms: 1_000,
            expires_at_unix_ms: 61_000,
            unattended: false,
            record_shell: false,
            activity: fitting(permissions),
        }
    }

    /// Some activity the permissions allow.
    fn fitting(p: Permissions) -> Activity {
        [
            Activity::Screen,
            Activity::Input,
            Activity::Clipboard,
            Activity::Shell,
            Activity::Push {
                path: "/tmp".into(),
            },
        ]
        .into_iter()
        .find(|a| a.fits(p))
        .unwrap_or_default()
    }

    #[test]
    fn a_command_session_runs_its_command_and_nothing_else() {
        let mut g = grant(Role::Support, Permissions::SHELL);
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        g.activity = Activity::command(&argv(&["df", "-h", "/home dir"]));
        assert_eq!(
            g.activity,
            Activity::Command {
                line: "df -h '/home dir'".into()
            }
        );
        let gate = SessionGate::new(g, "d1", 2_000).unwrap();
        let exec = |a: &[&str]| ToAgent::Exec {
            argv: argv(a),
            timeout_ms: None,
        };
        assert_eq!(gate.check(&exec(&["df", "-h", "/home dir"])), Ok(()));
        assert_eq!(
            gate.check(&exec(&["rm", "-rf", "/home dir"])),
            Err(Denied::NotTheCommand("df -h '/home dir'".into()))
        );
        assert!(matches!(
            gate.check(&ToAgent::ShellOpen {
                cols: 80,
                rows: 24,
                user: None
            }),
            Err(Denied::NotTheCommand(_))
        ));
        // A shell session runs whatever is typed, as the prompt said.
        let gate = SessionGate::new(grant(Role::Support, Permissions::SHELL), "d1", 2_000).unwrap();
        assert_eq!(gate.check(&exec(&["id"])), Ok(()));
    }

    #[test]
    fn an_activity_needs_its_permission() {
        let mut g = grant(Role::Support, Permissions::VIEW);
        g.activity = Activity::command(&["id".to_string()]);
        assert!(matches!(
            SessionGate::new(g, "d1", 2_000),
            Err(GrantError::ActivityMismatch(_))
        ));
        assert!(Activity::Pull { path: "/x".into() }.fits(Permissions::FILES));
        assert!(!Activity::Pull { path: "/x".into() }.fits(Permissions::FULL));
    }

    #[test]
    fn grant_checks() {
        assert!(SessionGate::new(grant(Role::Support, Permissions::CONTROL), "d1", 2_000).is_ok());
        assert_eq!(
            SessionGate::new(grant(Role::Support, Permissions::CONTROL), "d2", 2_000).unwrap_err(),
            GrantError::WrongDevice("d1".into())
        );
        assert_eq!(
            SessionGate::new(grant(Role::Support, Permissions::CONTROL), "d1", 61_001).unwrap_err(),
            GrantError::Expired
        );
        assert_eq!(
            SessionGate::new(grant(Role::Viewer, Permissions::VIEW), "d1", 2_000).unwrap_err(),
            GrantError::RoleTooLow(Role::Viewer)
        );
        assert_eq!(
            SessionGate::new(grant(Role::Admin, Permissions::default()), "d1", 2_000).unwrap_err(),
            GrantError::NoPermission
        );
        // Root alone is not something to do, only how shell and files run.
        let root_only = Permissions {
            root: true,
            ..Permissions::default()
        };
        assert_eq!(
            SessionGate::new(grant(Role::Admin, root_only), "d1", 2_000).unwrap_err(),
            GrantError::NoPermission
        );
    }

    #[test]
    fn root_is_named_wherever_permissions_are_described() {
        let root = Permissions {
            root: true,
            files: true,
            ..Permissions::SHELL
        };
        assert_eq!(root.describe(), "shell + files + root");
        assert!(root.as_root());
        assert!(!Permissions::SHELL.as_root());
        assert!(
            !Permissions {
                root: true,
                ..Permissions::FULL
            }
            .as_root()
        );
    }

    #[test]
    fn view_only_sessions_refuse_input() {
        let gate = SessionGate::new(grant(Role::Support, Permissions::VIEW), "d1", 2_000).unwrap();
        assert_eq!(gate.check(&ToAgent::Screenshot { display: 0 }), Ok(()));
        assert_eq!(
            gate.check(&ToAgent::Input(InputEvent::Click {
                x: 1,
                y: 1,
                button: MouseButton::Left
            })),
            Err(Denied::ViewOnly)
        );
        let gate =
            SessionGate::new(grant(Role::Support, Permissions::CONTROL), "d1", 2_000).unwrap();
        assert_eq!(
            gate.check(&ToAgent::Input(InputEvent::Text("héllo".into()))),
            Ok(())
        );
        assert_eq!(
            gate.check(&ToAgent::Input(InputEvent::Text("x".repeat(MAX_TEXT + 1)))),
            Err(Denied::TextTooLong(MAX_TEXT + 1))
        );
        assert_eq!(gate.check(&ToAgent::GetClipboard), Err(Denied::NoClipboard));
        assert_eq!(
            gate.check(&ToAgent::Exec {
                argv: vec!["id".into()],
                timeout_ms: None
            }),
            Err(Denied::NoShell)
        );
        assert_eq!(
            gate.check(&ToAgent::Stat { path: "/".into() }),
            Err(Denied::NoFiles)
        );
        let shell =
            SessionGate::new(grant(Role::Support, Permissions::SHELL), "d1", 2_000).unwrap();
        assert_eq!(
            shell.check(&ToAgent::ShellOpen {
                cols: 80,
                rows: 24,
                user: None
            }),
            Ok(())
        );
        assert_eq!(
            shell.check(&ToAgent::Screenshot { display: 0 }),
            Err(Denied::NoView)
        );
        assert_eq!(
            shell.check(&ToAgent::Exec {
                argv: vec![],
                timeout_ms: None
            }),
            Err(Denied::TooLarge)
        );
        assert_eq!(
            shell.check(&ToAgent::FileChunk(vec![0; 10])),
            Err(Denied::NoFiles)
        );
        let with_clipboard = Permissions {
            clipboard: true,
            ..Permissions::VIEW
        };
        let gate = SessionGate::new(grant(Role::Support, with_clipboard), "d1", 2_000).unwrap();
        assert_eq!(gate.check(&ToAgent::GetClipboard), Ok(()));
        assert_eq!(
            gate.check(&ToAgent::SetClipboard {
                text: "x".repeat(MAX_CLIPBOARD + 1)
            }),
            Err(Denied::ClipboardTooLong(MAX_CLIPBOARD + 1))
        );
    }

    #[test]
    fn compact_frames_stand_for_the_same_updates_in_fewer_bytes() {
        let frame = |seq, width, encode_us| FrameUpdate {
            seq,
            display: 0,
            width,
            height: 800,
            rects: vec![EncodedRect {
                rect: crate::tiles::Rect {
                    x: 371,
                    y: 23,
                    w: 12,
                    h: 13,
                },
                compression: Compression::Indexed,
                data: vec![1; 21],
            }],
            encode_us,
        };
        let (mut agent, mut viewer) = (Deltas::default(), Deltas::default());
        let mut sizes = vec![];
        for (seq, width) in [
            (300, 1280),
            (301, 1280),
            (302, 1280),
            (305, 1280),
            (306, 1920),
        ] {
            let f = frame(seq, width, 93);
            let d = agent.compact(f.clone());
            sizes.push(
                crate::codec::to_bytes(&ToViewer::Delta(d.clone()))
                    .unwrap()
                    .len(),
            );
            let back = viewer.expand(d).unwrap();
            assert_eq!(back, FrameUpdate { encode_us: 90, ..f });
        }
        let full = crate::codec::to_bytes(&ToViewer::Frame(frame(302, 1280, 93)))
            .unwrap()
            .len();
        // A frame in the same size: a 1-byte step for a 3-byte number and no 6-byte size.
        assert_eq!(sizes[2] + 7, full, "{sizes:?}");
        assert!(sizes[0] > sizes[1] && sizes[4] > sizes[3], "{sizes:?}");
        // A hostile agent: no size to start from, a sequence number that overflows.
        let mut fresh = Deltas::default();
        let d = FrameDelta {
            seq: 1,
            display: 0,
            size: None,
            rects: vec![],
            encode_10us: 0,
        };
        assert_eq!(fresh.expand(d.clone()), Err(DeltaError::NoSize));
        let start = FrameDelta {
            seq: u64::MAX,
            size: Some((8, 8)),
            ..d.clone()
        };
        assert!(fresh.expand(start).is_ok());
        assert_eq!(fresh.expand(d), Err(DeltaError::SeqOverflow));
    }
}
