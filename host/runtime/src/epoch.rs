//! The epoch ticker: the thread that advances the engine's epoch while a plugin call is
//! in flight, so that the store's epoch callback can stop a call at its deadline.
//!
//! Ticking is cheap; what costs is waking a thread to look whether a call is in flight.
//! On a small VM a thread wake-up costs about as much as delivering an audio frame, so
//! the ticker picks, by the call rate it measures, the cheaper of two ways to be woken:
//!
//! - **Sparse** (at idle, and under [`SPARSE_BELOW`] calls a second, e.g. a lone
//!   real-time stream): a call that starts with no other in flight (re-)arms a kernel
//!   timer ([`Alarm`], a `timerfd`) for [`EPOCH_WATCH`], unless a call did within the
//!   last [`REARM_AFTER`]: one system call, under a microsecond. Calls in flight when it
//!   fires are ticked for; while calls come closer than [`EPOCH_WATCH`] it never fires,
//!   and after the last one it fires once. A lone real-time stream's calls (every 20 ms)
//!   so cost no wake-up at all. The calls measure their own rate (a clock read every
//!   [`RATE_SAMPLE`] calls) and wake the thread once it passes [`DENSE_ABOVE`]; a timer
//!   that cannot be armed makes the ticker dense too.
//! - **Dense** (over [`DENSE_ABOVE`] calls a second, e.g. hundreds of streams): calls
//!   touch only atomics, and the thread looks every [`EPOCH_WATCH`] for one in flight: 25
//!   wake-ups a second shared by thousands of calls. It measures the rate over
//!   [`RATE_WINDOW`] and goes sparse again under [`SPARSE_BELOW`].
//!
//! Either way, once a call is seen in flight the thread ticks every [`EPOCH_TICK`] until
//! no call is. A call's epoch deadline is one tick ahead when it starts and the store's
//! epoch callback compares the wall clock with the call's deadline at every tick, so an
//! early tick never cuts a call short, and a runaway call is stopped at its deadline plus
//! a tick, or at [`EPOCH_WATCH`] plus a tick for deadlines shorter than that.
//!
//! A call that starts while another is in flight does not re-arm: the timer then fires
//! within [`EPOCH_WATCH`] of the earlier call's start, so a stream of overlapping calls
//! cannot keep postponing the look at a runaway one. Switching modes is race-free: a call
//! counts itself in flight and then reads the mode; the thread sets the mode and then
//! reads the calls in flight (all sequentially consistent), so either the call arms the
//! timer or the thread sees the call and ticks.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use wasmtime::{Engine, EngineWeak};

/// How often the engine's epoch advances while a call is in flight; deadlines are
/// checked at this granularity and a running guest yields to the executor this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How long a call runs before the ticker first looks at it (at most): a call's first
/// deadline check (and its first yield to the executor) comes within this plus one
/// [`EPOCH_TICK`] of its start, so deadlines shorter than that are enforced at that
/// bound. With one tick it stays under the shortest default deadline (media, 50 ms).
pub const EPOCH_WATCH: Duration = Duration::from_millis(40);

/// Calls a second under which the ticker goes sparse (a timer armed by calls).
pub const SPARSE_BELOW: u64 = 250;

/// Calls a second over which the ticker goes dense (a look every [`EPOCH_WATCH`]). A
/// system call per call (about 0.5 µs here, more when cold) costs what 25 wake-ups a
/// second do at somewhere near 1,000 calls a second; the gap between the two bounds
/// keeps a rate near them from flapping.
pub const DENSE_ABOVE: u64 = 500;

/// How long a dense ticker measures the rate over before it may go sparse.
const RATE_WINDOW: Duration = Duration::from_secs(1);

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// What the ticker thread waits on: a one-shot kernel timer (a `timerfd`) that calls arm,
/// and an `eventfd` that wakes the thread at once. Arming and poking are system calls;
/// only a timer that fires, or a poke, is a wake-up.
#[derive(Debug)]
struct Alarm {
    timer: OwnedFd,
    poke: OwnedFd,
}

impl Alarm {
    fn new() -> std::io::Result<Self> {
        let timer = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )
        .map_err(|e| std::io::Error::other(format!("creating the epoch timer: {e}")))?;
        let poke = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| {
                std::io::Error::other(format!("creating the epoch ticker's eventfd: {e}"))
            })?;
        Ok(Self { timer, poke })
    }

    /// Fires once after `after` (replacing any earlier setting); false (logged) if the
    /// timer could not be set.
    fn set(&self, after: Duration) -> bool {
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(after),
        };
        // Fails only for a bad descriptor or value, neither of which can happen here.
        match rustix::time::timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!("setting the epoch timer: {e}; looking for calls in flight every {EPOCH_WATCH:?} instead");
                false
            }
        }
    }

    /// Wakes the waiting thread at once.
    fn poke(&self) {
        if let Err(e) = rustix::io::write(&self.poke, &1u64.to_ne_bytes()) {
            tracing::error!("waking the epoch ticker: {e}");
        }
    }

    /// Waits until the timer fires, a poke comes or `timeout` passes (`None`: no
    /// timeout), and consumes what woke it.
    fn wait(&self, timeout: Option<Duration>) {
        let timeout = timeout.map(timespec);
        let mut fds = [
            PollFd::new(&self.timer, PollFlags::IN),
            PollFd::new(&self.poke, PollFlags::IN),
        ];
        if !matches!(rustix::event::poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0) {
            return;
        }
        // Non-blocking reads: one that finds nothing changes nothing.
        let mut count = [0u8; 8];
        if !fds[0].revents().is_empty() {
            let _ = rustix::io::read(&self.timer, &mut count);
        }
        if !fds[1].revents().is_empty() {
            let _ = rustix::io::read(&self.poke, &mut count);
        }
    }
}

/// Advances an engine's epoch while plugin calls are in flight (each holds the guard
/// [`EpochTicker::call`] returns); see the module's documentation for how it is woken.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    in_flight: AtomicUsize,
    /// Calls started so far.
    started: AtomicU64,
    /// Sparse mode: calls arm [`Self::alarm`] and measure their own rate.
    sparse: AtomicBool,
    alarm: Alarm,
    /// When the current sample of sparse calls began, in nanoseconds since `origin`.
    sample_since: AtomicU64,
    /// When a call last armed the alarm, in nanoseconds since `origin` ([`NEVER`]: not
    /// yet).
    armed_at: AtomicU64,
    /// The ticker's own time origin.
    origin: Instant,
    /// Epoch ticks so far.
    ticks: AtomicU64,
    /// Times the thread woke up.
    wakes: AtomicU64,
    stop: AtomicBool,
}

/// Sparse calls read the clock once per this many calls to measure their rate.
const RATE_SAMPLE: u64 = 64;

/// A call re-arms the alarm only if it was last armed this long ago or more: the calls
/// of a burst (a hot swap's snapshot, restore and re-open) cost one system call, and
/// the alarm still fires between `EPOCH_WATCH - REARM_AFTER` and [`EPOCH_WATCH`] after a
/// call's start.
const REARM_AFTER: Duration = Duration::from_millis(10);

/// [`REARM_AFTER`] in nanoseconds.
const REARM_AFTER_NANOS: u64 = REARM_AFTER.as_nanos() as u64;

/// `armed_at` before the first arming.
const NEVER: u64 = u64::MAX;

/// One call in flight: the ticker ticks while any such guard lives long enough.
pub(crate) struct InFlight<'a>(&'a EpochTicker);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine` (held weakly: the thread ends with it).
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Arc<Self>> {
        let ticker = Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            sparse: AtomicBool::new(true),
            alarm: Alarm::new()?,
            sample_since: AtomicU64::new(0),
            armed_at: AtomicU64::new(NEVER),
            origin: Instant::now(),
            ticks: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let weak = engine.weak();
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("zoomhost-epoch".into())
            .spawn(move || t.run(&weak))?;
        Ok(ticker)
    }

    /// Nanoseconds since the ticker started.
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The thread's loop: tick while a call is in flight; otherwise, when sparse, wait
    /// for the alarm (or a poke) without a timeout, and when dense, look again after
    /// [`EPOCH_WATCH`] and go sparse once the rate has fallen.
    fn run(&self, engine: &EngineWeak) {
        let mut window = (Instant::now(), self.started.load(Ordering::SeqCst));
        while !self.stop.load(Ordering::SeqCst) {
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                while self.in_flight.load(Ordering::SeqCst) > 0 && !self.stop.load(Ordering::SeqCst)
                {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                    self.ticks.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let sparse = self.sparse.load(Ordering::SeqCst);
            self.alarm.wait((!sparse).then_some(EPOCH_WATCH));
            self.wakes.fetch_add(1, Ordering::Relaxed);
            if sparse {
                if !self.sparse.load(Ordering::SeqCst) {
                    // A call found the rate dense: measure it from now.
                    window = (Instant::now(), self.started.load(Ordering::SeqCst));
                }
                continue;
            }
            let elapsed = window.0.elapsed();
            if elapsed >= RATE_WINDOW {
                let started = self.started.load(Ordering::SeqCst);
                let millis = u64::try_from(elapsed.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                if (started - window.1).saturating_mul(1000) / millis < SPARSE_BELOW {
                    self.sample_since.store(self.now_nanos(), Ordering::Relaxed);
                    // Then the loop's next look at the calls in flight: one that began
                    // while dense (and so did not arm) is ticked for.
                    self.sparse.store(true, Ordering::SeqCst);
                }
                window = (Instant::now(), started);
            }
        }
    }

    /// A call starts: the ticker ticks from at most [`EPOCH_WATCH`] after its start
    /// until the returned guard is dropped.
    pub(crate) fn call(&self) -> InFlight<'_> {
        let first = self.in_flight.fetch_add(1, Ordering::SeqCst) == 0;
        let started = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        if self.sparse.load(Ordering::SeqCst) {
            if first {
                self.arm();
            }
            if started.is_multiple_of(RATE_SAMPLE) {
                self.sample_rate();
            }
        }
        InFlight(self)
    }

    /// A sparse call starting with no other in flight: re-arms the alarm (pushing back a
    /// firing that an earlier call, ended by now, set up: with calls closer than
    /// [`EPOCH_WATCH`] it never fires), unless a call did within [`REARM_AFTER`].
    fn arm(&self) {
        let now = self.now_nanos();
        let last = self.armed_at.load(Ordering::Relaxed);
        if last != NEVER && now.saturating_sub(last) < REARM_AFTER_NANOS {
            return;
        }
        if self.alarm.set(EPOCH_WATCH) {
            self.armed_at.store(now, Ordering::Relaxed);
        } else {
            // No timer to watch this call: the thread looks periodically.
            self.go_dense();
        }
    }

    /// Every [`RATE_SAMPLE`]th sparse call: goes dense if the sample came faster than
    /// [`DENSE_ABOVE`] calls a second.
    fn sample_rate(&self) {
        let now = self.now_nanos();
        let since = self.sample_since.swap(now, Ordering::Relaxed);
        if now.saturating_sub(since) < RATE_SAMPLE * 1_000_000_000 / DENSE_ABOVE {
            self.go_dense();
        }
    }

    /// The thread looks periodically from now on and calls stop arming (the last arming
    /// fires once, harmlessly).
    fn go_dense(&self) {
        self.sparse.store(false, Ordering::SeqCst);
        self.alarm.poke();
    }

    /// Whether calls arm the timer (rather than the thread looking every
    /// [`EPOCH_WATCH`]).
    #[cfg(test)]
    fn is_sparse(&self) -> bool {
        self.sparse.load(Ordering::SeqCst)
    }

    /// Epoch ticks so far.
    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Times the thread woke so far.
    #[cfg(test)]
    fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Ends the thread.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.alarm.poke();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_epoch_ticker_is_woken_by_a_timer_per_call_when_calls_are_sparse_and_looks_periodically_when_dense(
    ) {
        let engine = Engine::new(&crate::engine::base_config()).unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        // Idle: no look, no tick.
        std::thread::sleep(EPOCH_WATCH * 3);
        assert!(ticker.is_sparse());
        assert_eq!(ticker.wakes(), 0, "an idle ticker woke up");
        assert_eq!(ticker.ticks(), 0, "an idle ticker ticked");

        // A call that runs: its timer wakes the thread, which ticks until it ends.
        let call = ticker.call();
        wait_until("a call in flight gets ticks", || ticker.ticks() >= 3);
        drop(call);

        // Sparse short calls, 100 a second for half a second: no wake-up at all (a
        // periodic look would have woken 12 times), except after a gap long enough for
        // the timer to fire (a loaded machine oversleeping).
        std::thread::sleep(EPOCH_TICK * 2);
        let (ticks, wakes) = (ticker.ticks(), ticker.wakes());
        let mut long_gaps = 0;
        let mut last = Instant::now();
        for _ in 0..50 {
            drop(ticker.call());
            std::thread::sleep(Duration::from_millis(10));
            if last.elapsed() >= EPOCH_WATCH - REARM_AFTER {
                long_gaps += 1;
            }
            last = Instant::now();
        }
        assert!(ticker.is_sparse(), "went dense at 100 calls a second");
        assert!(
            ticker.ticks() <= ticks + 1 + long_gaps,
            "ticked for sparse short calls"
        );
        assert!(
            ticker.wakes() <= wakes + 1 + long_gaps,
            "woke {} times for 50 sparse short calls ({long_gaps} gaps of 30 ms or more)",
            ticker.wakes() - wakes
        );

        // A long call with short ones overlapping it, 200 a second: they do not re-arm
        // the timer, so they cannot postpone the look at it.
        let ticks = ticker.ticks();
        let call = ticker.call();
        let since = Instant::now();
        while ticker.ticks() < ticks + 2 {
            assert!(
                since.elapsed() < Duration::from_secs(2),
                "overlapping calls kept a long call from being ticked for"
            );
            drop(ticker.call());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(call);
        assert!(ticker.is_sparse(), "went dense at 200 calls a second");

        // Dense calls (thousands a second): the calls notice and it looks periodically;
        // a long call is still ticked for.
        let dense_until = Instant::now() + Duration::from_secs(10);
        while ticker.is_sparse() {
            assert!(Instant::now() < dense_until, "never went dense");
            for _ in 0..100 {
                drop(ticker.call());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let ticks = ticker.ticks();
        let call = ticker.call();
        wait_until("a call in flight while dense gets ticks", || {
            ticker.ticks() >= ticks + 3
        });
        drop(call);

        // Calls stop: sparse again, and then no wake-up.
        wait_until("sparse again once calls stop", || ticker.is_sparse());
        std::thread::sleep(EPOCH_WATCH * 2);
        let wakes = ticker.wakes();
        std::thread::sleep(EPOCH_WATCH * 4);
        assert_eq!(
            ticker.wakes(),
            wakes,
            "a sparse ticker without calls woke up"
        );
        ticker.stop();
    }
}
