//! Link emulation for the `screen-link` suite: one hop of each session crosses an emulated
//! slow link, for Tether and for the peer alike.
//!
//! The suite runs in a network namespace of its own (`unshare --net`, root), so nothing here
//! touches the machine's network: its loopback gets an MTU of 1500 (as on a real link, so TCP
//! segments and QUIC datagrams are packet-sized) and every packet to or from 127.0.0.2
//! ([`FAR`]) is queued to this process through NFQUEUE (`iptables -j NFQUEUE`; this kernel's
//! nftables has no `queue`). The far end of each
//! session listens there: Tether's agent reaches the relay at 127.0.0.2, x11vnc listens on
//! 127.0.0.2 for the proxy beside the viewer. Everything else (the technician to the relay, the
//! viewer to its proxy, the X displays) stays fast.
//!
//! `tc netem` would do this in the kernel, but this machine's kernel has no `sch_netem` (nor
//! `sch_prio`): the emulator does netem's work on the queued packets. Each direction is its
//! own link: a packet is dropped at random with the link's loss rate, or when the queue ahead
//! of it holds [`QUEUE_PACKETS`] packets already (a router's tail drop); otherwise it leaves
//! when the link has sent the packets ahead of it at the link's rate (its whole IP length), and
//! is let through the link's one-way delay after that (give or take [`TICK`]). Verdicts are given
//! in order, so nothing is reordered.

use super::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The far end of the emulated link.
pub const FAR: &str = "127.0.0.2";
/// Set in the namespace's copy of the bench (see [`reexec`]).
const INSIDE: &str = "TETHER_BENCH_IN_NETNS";
/// How often the emulator looks for queued packets.
const TICK: Duration = Duration::from_micros(500);
/// The NFQUEUE queue number.
const QUEUE: u16 = 7;
/// Packets a link's queue holds before dropping (netem's default is 1000; a home router's
/// buffer is nearer this).
const QUEUE_PACKETS: usize = 100;

/// One emulated link.
pub struct Link {
    pub name: &'static str,
    pub kbps: u64,
    pub rtt_ms: u64,
    /// Probability that a packet is lost.
    pub loss: f64,
}

/// The links of the issue: a decent office link with some loss, and a poor one.
pub const LINKS: [Link; 2] = [
    Link {
        name: "20mbit_40ms_0.5loss",
        kbps: 20_000,
        rtt_ms: 40,
        loss: 0.005,
    },
    Link {
        name: "1mbit_80ms",
        kbps: 1_000,
        rtt_ms: 80,
        loss: 0.0,
    },
];

/// Whether this process runs in the suite's own network namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// The host the far end of a session listens on: [`FAR`] in the suite's namespace, else
/// 127.0.0.1.
pub fn far_host() -> &'static str {
    if inside() { FAR } else { "127.0.0.1" }
}

/// Runs this bench again with the same arguments in a new network namespace; its exit code.
pub fn reexec() -> Result<i32> {
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new("unshare")
        .arg("--net")
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(INSIDE, "1")
        .status()
        .context("unshare (util-linux) runs the link suite in a network namespace")?;
    Ok(status.code().unwrap_or(1))
}

fn sh(cmd: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(cmd).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Brings the namespace's loopback up with a real link's MTU.
pub fn loopback_up() -> Result<()> {
    anyhow::ensure!(inside(), "not in the suite's network namespace");
    sh("ip", &["link", "set", "lo", "up", "mtu", "1500"])
}

/// What an emulator did, for the report.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub packets: u64,
    pub lost: u64,
    pub tail_dropped: u64,
}

/// A running link emulator; the link is gone (the iptables rules removed) on drop.
pub struct Emulator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Stats>>>,
}

impl Emulator {
    pub fn start(link: &'static Link) -> Result<Self> {
        anyhow::ensure!(inside(), "not in the suite's network namespace");
        let mut queue = nfq::Queue::open().context("NFQUEUE (root, nf_tables)")?;
        queue.bind(QUEUE)?;
        queue.set_queue_max_len(QUEUE, 8192)?;
        queue.set_copy_range(QUEUE, 64)?;
        queue.set_nonblocking(true);
        let q = QUEUE.to_string();
        for side in ["-d", "-s"] {
            sh(
                "iptables",
                &[
                    "-w",
                    "-A",
                    "OUTPUT",
                    side,
                    FAR,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &q,
                ],
            )?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(queue, link, &flag));
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the emulator; what it did.
    pub fn finish(mut self) -> Result<Stats> {
        self.end()
    }

    fn end(&mut self) -> Result<Stats> {
        // The namespace is the suite's own: its OUTPUT chain holds only these rules.
        let _ = sh("iptables", &["-w", "-F", "OUTPUT"]);
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the link emulator panicked"))?,
            None => Ok(Stats::default()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// One direction of a link: the packets on their way, each with the time it is let through.
#[derive(Default)]
struct Direction {
    /// When the link has sent everything queued so far.
    busy_until: Option<Instant>,
    on_the_way: VecDeque<(Instant, nfq::Message)>,
    /// Departure times of packets not yet sent onto the link (its queue).
    queued: VecDeque<Instant>,
}

fn run(mut queue: nfq::Queue, link: &Link, stop: &AtomicBool) -> Result<Stats> {
    let delay = Duration::from_millis(link.rtt_ms / 2);
    let mut dirs = [Direction::default(), Direction::default()];
    let mut stats = Stats::default();
    // xorshift64: a fixed, repeatable loss pattern.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    while !stop.load(Ordering::Relaxed) {
        // Let through what is due.
        let now = Instant::now();
        for d in &mut dirs {
            while d.queued.front().is_some_and(|&t| t <= now) {
                d.queued.pop_front();
            }
            while d.on_the_way.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, mut msg)) = d.on_the_way.pop_front() {
                    msg.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(msg)?;
                }
            }
        }
        // Wait for a packet, or until the next one is due. (nfq 0.2.5 does not show its
        // socket to poll on: a short nap bounds the added delay to [`TICK`].)
        let next = dirs
            .iter()
            .filter_map(|d| d.on_the_way.front().map(|(t, _)| *t))
            .min();
        let nap = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(TICK)
            .min(TICK);
        std::thread::sleep(nap);
        loop {
            let mut msg = match queue.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            stats.packets += 1;
            let ip = msg.get_payload();
            // IPv4: total length at 2..4, destination at 16..20.
            let len = ip
                .get(2..4)
                .map(|b| u64::from(u16::from_be_bytes([b[0], b[1]])))
                .unwrap_or(1500);
            let to_far = ip.get(16..20) == Some(&[127, 0, 0, 2][..]);
            let d = &mut dirs[usize::from(to_far)];
            let now = Instant::now();
            if random() < link.loss {
                stats.lost += 1;
                msg.set_verdict(nfq::Verdict::Drop);
                queue.verdict(msg)?;
                continue;
            }
            if d.queued.len() >= QUEUE_PACKETS {
                stats.tail_dropped += 1;
                msg.set_verdict(nfq::Verdict::Drop);
                queue.verdict(msg)?;
                continue;
            }
            let start = d.busy_until.filter(|&t| t > now).unwrap_or(now);
            let sent = start + Duration::from_nanos(len * 8 * 1_000_000 / link.kbps);
            d.busy_until = Some(sent);
            d.queued.push_back(sent);
            d.on_the_way.push_back((sent + delay, msg));
        }
    }
    // Whatever is still on its way goes through at once.
    for d in &mut dirs {
        for (_, mut msg) in d.on_the_way.drain(..) {
            msg.set_verdict(nfq::Verdict::Accept);
            let _ = queue.verdict(msg);
        }
    }
    Ok(stats)
}
