//! `zoomhost bench --io-floor`: what this machine's kernel alone charges for a frame.
//!
//! At real-time pace each media socket has one message waiting when it is read, so
//! every frame costs at least one `recv` and a share of an `epoll_wait` and of a thread
//! wake-up, whatever the reader does with it. This measures that floor on the machine
//! the bench runs on: a sender process (`zoomhost bench-floor-send`, this binary) writes
//! one message of the size of the simulator's 20 ms audio message ([`MESSAGE_BYTES`]) per
//! stream per frame, on the simulator's schedule (stream `i` at `i mod 20` ms past a
//! 20 ms grid, every stream at once with `--aligned`, or as fast as the sockets take
//! them with `--unpaced`), over plain loopback TCP; this process reads them on one
//! thread with a bare `epoll` + `recv` loop (mio) that only counts bytes. The figure is
//! that thread's CPU (user + system, `CLOCK_THREAD_CPUTIME_ID`) per message: the part
//! of the host's CPU per frame that no WebSocket, JSON, base64 or plugin work is in.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Bytes of one media message: the simulator's 20 ms L16 audio message as the host's
/// socket receives it (WebSocket header and JSON with 640 bytes of base64 audio).
pub const MESSAGE_BYTES: usize = 963;
/// The frame period.
const FRAME: Duration = Duration::from_millis(20);

/// What the floor measured.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Messages read (all the sender wrote, or the run failed).
    pub messages: u64,
    /// The reader thread's CPU, seconds.
    pub cpu: f64,
    /// `recv` calls made.
    pub reads: u64,
    /// `epoll_wait` calls made.
    pub polls: u64,
    /// The reader thread's sleeps (voluntary context switches).
    pub sleeps: u64,
}

impl Floor {
    /// The reader's CPU per message, microseconds.
    pub fn us_per_message(&self) -> f64 {
        self.cpu / self.messages.max(1) as f64 * 1e6
    }
}

/// How the sender paces its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Stream `i` at `i mod 20` ms past each 20 ms frame.
    Spread,
    /// Every stream at the same instant of each frame.
    Aligned,
    /// As fast as the sockets take them.
    Unpaced,
}

impl Pace {
    fn arg(self) -> &'static str {
        match self {
            Pace::Spread => "spread",
            Pace::Aligned => "aligned",
            Pace::Unpaced => "unpaced",
        }
    }

    /// Parses the sender's `--pace`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "spread" => Ok(Pace::Spread),
            "aligned" => Ok(Pace::Aligned),
            "unpaced" => Ok(Pace::Unpaced),
            other => Err(format!(
                "--pace {other:?}: expected spread, aligned or unpaced"
            )),
        }
    }
}

/// Runs the floor: `streams` sockets, `frames` messages each, from a sender process
/// (`exe bench-floor-send`, `exe` being the zoomhost binary).
pub fn measure(
    exe: &std::path::Path,
    streams: usize,
    frames: u32,
    pace: Pace,
) -> anyhow::Result<Floor> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("io floor: binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let mut child = std::process::Command::new(exe)
        .args([
            "bench-floor-send",
            "--addr",
            &addr.to_string(),
            "--streams",
            &streams.to_string(),
            "--frames",
            &frames.to_string(),
            "--pace",
            pace.arg(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("io floor: starting the sender process")?;
    let read = accept_and_read(&listener, streams);
    let status = child.wait().context("io floor: waiting for the sender")?;
    let floor = read?;
    anyhow::ensure!(status.success(), "io floor: the sender failed ({status})");
    let expected = streams as u64 * u64::from(frames);
    anyhow::ensure!(
        floor.messages == expected,
        "io floor: read {} of {expected} messages",
        floor.messages
    );
    Ok(floor)
}

/// Accepts `streams` connections, then reads them all on this thread until each closes.
fn accept_and_read(listener: &TcpListener, streams: usize) -> anyhow::Result<Floor> {
    use mio::{Events, Interest, Poll, Token};

    let mut poll = Poll::new().context("io floor: creating an epoll instance")?;
    let mut sockets = Vec::with_capacity(streams);
    for i in 0..streams {
        let (socket, _) = listener
            .accept()
            .with_context(|| format!("io floor: accepting connection {i}"))?;
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(socket);
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        sockets.push(socket);
    }
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut bytes, mut reads, mut polls, mut open) = (0u64, 0u64, 0u64, streams);
    let cpu0 = thread_cpu();
    let sleeps0 = thread_sleeps();
    while open > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(30)))
            .context("io floor: epoll_wait")?;
        polls += 1;
        anyhow::ensure!(!events.is_empty(), "io floor: the sender went quiet");
        for event in events.iter() {
            let socket = &mut sockets[event.token().0];
            // A peer's close that came with the last data brings no later edge: such a
            // socket is read to its end.
            let closing = event.is_read_closed();
            loop {
                reads += 1;
                match socket.read(&mut buffer) {
                    Ok(0) => {
                        open -= 1;
                        break;
                    }
                    // Edge-triggered: a short read drained the socket (as tokio assumes).
                    Ok(n) if n < buffer.len() && !closing => {
                        bytes += n as u64;
                        break;
                    }
                    Ok(n) => bytes += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("io floor: recv"),
                }
            }
        }
    }
    Ok(Floor {
        messages: bytes / MESSAGE_BYTES as u64,
        cpu: thread_cpu() - cpu0,
        reads,
        polls,
        sleeps: thread_sleeps().saturating_sub(sleeps0),
    })
}

/// The sender (`zoomhost bench-floor-send`): connects `streams` sockets to `addr` and
/// writes `frames` messages on each at `pace`, then closes them.
pub fn send(addr: SocketAddr, streams: usize, frames: u32, pace: Pace) -> anyhow::Result<ExitCode> {
    let mut sockets = Vec::with_capacity(streams);
    for i in 0..streams {
        let socket = TcpStream::connect(addr)
            .with_context(|| format!("io floor sender: connecting socket {i} to {addr}"))?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let message = vec![b'x'; MESSAGE_BYTES];
    // The simulator's spread: 20 slots of 1 ms, stream i in slot i mod 20.
    let slot = |i: usize| match pace {
        Pace::Spread => (i % 20) as u32,
        _ => 0,
    };
    let start = Instant::now() + Duration::from_millis(50);
    for frame in 0..frames {
        for ms in 0..20u32 {
            if pace != Pace::Unpaced {
                let at = start + FRAME * frame + Duration::from_millis(u64::from(ms));
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            for (i, socket) in sockets.iter_mut().enumerate() {
                if slot(i) == ms {
                    socket
                        .write_all(&message)
                        .with_context(|| format!("io floor sender: writing to socket {i}"))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This thread's CPU (user + system), seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// This thread's voluntary context switches so far.
fn thread_sleeps() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_nvcsw as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_parse_back() {
        for pace in [Pace::Spread, Pace::Aligned, Pace::Unpaced] {
            assert_eq!(Pace::parse(pace.arg()), Ok(pace));
        }
        assert!(Pace::parse("fast").is_err());
    }

    #[test]
    fn the_reader_counts_every_message_of_a_sender_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || send(addr, 3, 4, Pace::Aligned).unwrap());
        let floor = accept_and_read(&listener, 3).unwrap();
        sender.join().unwrap();
        assert_eq!(floor.messages, 12);
        assert!(floor.reads >= 12 / 4 && floor.polls >= 1);
        assert!(floor.cpu > 0.0 && floor.us_per_message() > 0.0);
    }
}
