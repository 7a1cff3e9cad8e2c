//! `zoomhost bench --io-floor`: what this machine's kernel alone charges for a frame.
//!
//! At real-time pace each media socket has one message waiting when it is read, so
//! every frame costs at least one socket read and a share of a wait and of a thread
//! wake-up, whatever the reader does with it. This measures that floor on the machine
//! the bench runs on: a sender process (`zoomhost bench-floor-send`, this binary) writes
//! one message of the size of the simulator's 20 ms audio message ([`MESSAGE_BYTES`]) per
//! stream per frame, on the simulator's schedule (stream `i` at `i mod 20` ms past a
//! 20 ms grid, every stream at once with `--aligned`, or as fast as the sockets take
//! them with `--unpaced`), over plain loopback TCP; this process reads them on one
//! thread that only counts bytes, with one of two kernel interfaces ([`Reader`]):
//!
//! - [`Reader::Epoll`]: a bare `epoll_wait` + `recv` loop (mio), what tokio does;
//! - [`Reader::IoUring`]: io_uring, one `recv` in flight per socket and completions
//!   reaped in batches, so that system calls are shared by many messages. It shows
//!   whether a different I/O interface could lower the floor: the part it cannot lower is
//!   the kernel's TCP receive path itself.
//!
//! The figure is that thread's CPU (user + system, `CLOCK_THREAD_CPUTIME_ID`) per
//! message: the part of the host's CPU per frame that no WebSocket, JSON, base64 or
//! plugin work is in.

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
    /// `recv` calls made (epoll) or `recv` completions reaped (io_uring).
    pub reads: u64,
    /// Waits for the kernel: `epoll_wait` or `io_uring_enter` calls.
    pub waits: u64,
    /// The reader thread's sleeps (voluntary context switches).
    pub sleeps: u64,
}

impl Floor {
    /// The reader's CPU per message, microseconds.
    pub fn us_per_message(&self) -> f64 {
        self.cpu / self.messages.max(1) as f64 * 1e6
    }
}

/// The kernel interface the floor's reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `epoll_wait` for readiness, then `recv` on each ready socket until it is drained.
    Epoll,
    /// io_uring: a `recv` in flight on every socket; each `io_uring_enter` submits the
    /// next ones and waits for at least one completion.
    IoUring,
}

impl Reader {
    /// How the bench names it.
    pub fn label(self) -> &'static str {
        match self {
            Reader::Epoll => "epoll",
            Reader::IoUring => "io_uring",
        }
    }

    /// How it reads, in a phrase of the bench's report.
    pub fn how(self) -> &'static str {
        match self {
            Reader::Epoll => "a bare epoll_wait + recv loop",
            Reader::IoUring => "io_uring, a recv in flight per socket,",
        }
    }

    /// The system call that [`Floor::waits`] counts.
    pub fn wait_call(self) -> &'static str {
        match self {
            Reader::Epoll => "epoll_wait",
            Reader::IoUring => "io_uring_enter",
        }
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
/// (`exe bench-floor-send`, `exe` being the zoomhost binary), read with `reader`.
pub fn measure(
    exe: &std::path::Path,
    streams: usize,
    frames: u32,
    pace: Pace,
    reader: Reader,
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
    let read = accept_and_read(&listener, streams, reader);
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
fn accept_and_read(
    listener: &TcpListener,
    streams: usize,
    reader: Reader,
) -> anyhow::Result<Floor> {
    let mut sockets = Vec::with_capacity(streams);
    for i in 0..streams {
        let (socket, _) = listener
            .accept()
            .with_context(|| format!("io floor: accepting connection {i}"))?;
        sockets.push(socket);
    }
    match reader {
        Reader::Epoll => read_epoll(sockets),
        Reader::IoUring => io_uring_reader::read(&sockets),
    }
}

/// The epoll reader: edge-triggered readiness (mio), each ready socket read until drained.
fn read_epoll(sockets: Vec<TcpStream>) -> anyhow::Result<Floor> {
    use mio::{Events, Interest, Poll, Token};

    let mut poll = Poll::new().context("io floor: creating an epoll instance")?;
    let streams = sockets.len();
    let mut registered = Vec::with_capacity(streams);
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(socket);
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        registered.push(socket);
    }
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut bytes, mut reads, mut waits, mut open) = (0u64, 0u64, 0u64, streams);
    let mut ended = vec![false; streams];
    let start = ThreadUsage::now();
    while open > 0 {
        poll.poll(&mut events, Some(QUIET))
            .context("io floor: epoll_wait")?;
        waits += 1;
        anyhow::ensure!(!events.is_empty(), "io floor: the sender went quiet");
        for event in events.iter() {
            let i = event.token().0;
            // A socket read to its end may still report a later edge (its hang-up): it
            // is not read, nor counted closed, twice.
            if ended[i] {
                continue;
            }
            let socket = &mut registered[i];
            // A peer's close that came with the last data brings no later edge: such a
            // socket is read to its end.
            let closing = event.is_read_closed();
            loop {
                reads += 1;
                match socket.read(&mut buffer) {
                    Ok(0) => {
                        ended[i] = true;
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
    Ok(start.floor(bytes, reads, waits))
}

/// How long the reader waits for a message before it calls the sender gone.
const QUIET: Duration = Duration::from_secs(30);

/// The reader thread's CPU and sleeps when it started reading.
struct ThreadUsage {
    cpu: f64,
    sleeps: u64,
}

impl ThreadUsage {
    fn now() -> Self {
        Self {
            cpu: thread_cpu(),
            sleeps: thread_sleeps(),
        }
    }

    /// The floor of a reader that started at `self` and has read `bytes` so far.
    fn floor(&self, bytes: u64, reads: u64, waits: u64) -> Floor {
        Floor {
            messages: bytes / MESSAGE_BYTES as u64,
            cpu: thread_cpu() - self.cpu,
            reads,
            waits,
            sleeps: thread_sleeps().saturating_sub(self.sleeps),
        }
    }
}

/// The io_uring reader (Linux only).
#[cfg(target_os = "linux")]
mod io_uring_reader {
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    use anyhow::Context as _;
    use io_uring::{opcode, types, IoUring};

    use super::{Floor, ThreadUsage, QUIET};

    /// Bytes each socket's `recv` may take at once: a few messages.
    const BUFFER: usize = 4096;

    /// Reads every socket to its end with a `recv` in flight on each.
    pub(super) fn read(sockets: &[TcpStream]) -> anyhow::Result<Floor> {
        let entries = u32::try_from(sockets.len().next_power_of_two().max(8))
            .context("io floor: too many sockets for one io_uring")?;
        let mut buffers = vec![0u8; BUFFER * sockets.len()];
        let mut ring = IoUring::new(entries).context(
            "io floor: creating an io_uring (is it turned off here? see /proc/sys/kernel/io_uring_disabled)",
        )?;
        let read = drive(&mut ring, sockets, &mut buffers);
        if read.is_err() {
            // Receives may still be in flight into the buffers until the ring is torn
            // down: they are never freed under the kernel.
            std::mem::forget(buffers);
        }
        read
    }

    /// The loop: reap completions, count their bytes, queue the next `recv` on each
    /// socket that is still open, and wait in one `io_uring_enter` for the next.
    fn drive(
        ring: &mut IoUring,
        sockets: &[TcpStream],
        buffers: &mut [u8],
    ) -> anyhow::Result<Floor> {
        let chunks: Vec<*mut u8> = buffers.chunks_mut(BUFFER).map(|c| c.as_mut_ptr()).collect();
        let recv = |i: usize| {
            opcode::Recv::new(types::Fd(sockets[i].as_raw_fd()), chunks[i], BUFFER as u32)
                .build()
                .user_data(i as u64)
        };
        for i in 0..sockets.len() {
            // SAFETY: the buffer outlives the receive (it is freed only once every socket
            // reached its end, or leaked), and each socket has one receive in flight.
            unsafe { ring.submission().push(&recv(i)) }
                .map_err(|_| anyhow::anyhow!("io floor: the io_uring submission queue is full"))?;
        }
        let timeout = types::Timespec::from(QUIET);
        let args = types::SubmitArgs::new().timespec(&timeout);
        let (mut bytes, mut reads, mut waits, mut open) = (0u64, 0u64, 0u64, sockets.len());
        let mut done = Vec::with_capacity(sockets.len());
        let start = ThreadUsage::now();
        while open > 0 {
            match ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                    anyhow::bail!("io floor: the sender went quiet")
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e).context("io floor: io_uring_enter"),
            }
            waits += 1;
            done.extend(
                ring.completion()
                    .map(|c| (c.user_data() as usize, c.result())),
            );
            for (i, result) in done.drain(..) {
                reads += 1;
                match result {
                    0 => {
                        open -= 1;
                        continue;
                    }
                    n if n > 0 => bytes += n as u64,
                    e if -e == libc::EINTR || -e == libc::EAGAIN => {}
                    e => {
                        return Err(std::io::Error::from_raw_os_error(-e))
                            .with_context(|| format!("io floor: recv on socket {i}"))
                    }
                }
                // SAFETY: as above.
                unsafe { ring.submission().push(&recv(i)) }.map_err(|_| {
                    anyhow::anyhow!("io floor: the io_uring submission queue is full")
                })?;
            }
        }
        Ok(start.floor(bytes, reads, waits))
    }
}

/// The io_uring reader where there is no io_uring.
#[cfg(not(target_os = "linux"))]
mod io_uring_reader {
    pub(super) fn read(_: &[std::net::TcpStream]) -> anyhow::Result<super::Floor> {
        anyhow::bail!("io floor: io_uring is Linux only")
    }
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

    /// `reader`'s floor of `streams` × `frames` messages from a sender thread.
    fn read_from_sender_thread(streams: usize, frames: u32, pace: Pace, reader: Reader) -> Floor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || send(addr, streams, frames, pace).unwrap());
        let floor = accept_and_read(&listener, streams, reader).unwrap();
        sender.join().unwrap();
        floor
    }

    #[test]
    fn the_reader_counts_every_message_of_a_sender_thread() {
        let floor = read_from_sender_thread(3, 4, Pace::Aligned, Reader::Epoll);
        assert_eq!(floor.messages, 12);
        assert!(floor.reads >= 12 / 4 && floor.waits >= 1);
        assert!(floor.cpu > 0.0 && floor.us_per_message() > 0.0);
    }

    #[test]
    fn a_socket_that_reports_again_after_its_end_is_counted_closed_once() {
        // Socket 0 ends (FIN), then is reset: a second edge after its end. Counting it
        // closed twice would stop the reader before socket 1's message.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let mut first = TcpStream::connect(addr).unwrap();
            let mut second = TcpStream::connect(addr).unwrap();
            first.write_all(&[b'x'; MESSAGE_BYTES]).unwrap();
            first.shutdown(std::net::Shutdown::Write).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            reset(first);
            std::thread::sleep(Duration::from_millis(50));
            second.write_all(&[b'x'; MESSAGE_BYTES]).unwrap();
        });
        let floor = accept_and_read(&listener, 2, Reader::Epoll).unwrap();
        sender.join().unwrap();
        assert_eq!(floor.messages, 2, "{floor:?}");
    }

    /// Closes `socket` with a reset (`SO_LINGER` 0) instead of a FIN.
    fn reset(socket: TcpStream) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads the struct it is given, of the size given.
        let set = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_LINGER");
    }

    #[test]
    fn the_io_uring_reader_counts_every_message_and_each_end() {
        let floor = read_from_sender_thread(5, 4, Pace::Unpaced, Reader::IoUring);
        assert_eq!(floor.messages, 20);
        // One completion per receive: at least one carrying data and one at the end of
        // each socket, and no wait without a completion behind it.
        assert!(floor.reads >= 10 && floor.waits >= 1, "{floor:?}");
        assert!(floor.waits <= floor.reads, "{floor:?}");
        assert!(floor.cpu > 0.0, "{floor:?}");
    }

    #[test]
    fn the_io_uring_reader_names_a_sender_that_went_away_midway() {
        // A peer that resets its connection is an error naming the socket, not a hang.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let socket = TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            reset(socket);
        });
        let error = accept_and_read(&listener, 1, Reader::IoUring).unwrap_err();
        sender.join().unwrap();
        assert!(
            format!("{error:#}").contains("recv on socket 0"),
            "{error:#}"
        );
    }
}
