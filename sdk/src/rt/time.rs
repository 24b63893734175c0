//! Timers on the host's clock: [`sleep`], [`sleep_until`], [`interval`],
//! [`interval_at`], [`timeout`], [`timeout_at`], shaped like `tokio::time`.
//!
//! A deadline crosses the boundary as "nanoseconds from now", so the plugin
//! never needs the host's clock type. A deadline that has already passed
//! completes without crossing at all.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::abi::RawFuture;

pub use std::time::Duration;
pub use tokio::time::{Instant, MissedTickBehavior};

use crate::boundary::injected;

/// Waits until `duration` has elapsed, on the host's timer.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{sleep, Duration, Instant};
/// let start = Instant::now();
/// sleep(Duration::from_millis(5)).await;
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// # }
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until `deadline`, on the host's timer. A deadline that has passed
/// completes at once, without crossing to the host.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{sleep_until, Duration, Instant};
/// let deadline = Instant::now() + Duration::from_millis(3);
/// sleep_until(deadline).await;
/// assert!(Instant::now() >= deadline);
/// # }
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        state: SleepState::Idle,
    }
}

/// Future returned by [`sleep`] and [`sleep_until`], like `tokio::time::Sleep`.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    state: SleepState,
}

enum SleepState {
    Idle,
    Host(RawFuture<()>),
    Native(Pin<Box<tokio::time::Sleep>>),
    Elapsed,
}

impl Sleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed and the sleep has completed.
    pub fn is_elapsed(&self) -> bool {
        matches!(self.state, SleepState::Elapsed)
    }

    /// Moves the deadline, like `tokio::time::Sleep::reset`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use horizon_plugin_sdk::rt::time::{sleep, Duration, Instant};
    /// let mut s = Box::pin(sleep(Duration::from_secs(60)));
    /// s.as_mut().reset(Instant::now());
    /// s.await; // at once
    /// # }
    /// ```
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.deadline = deadline;
        this.state = SleepState::Idle;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                SleepState::Elapsed => return Poll::Ready(()),
                SleepState::Host(fut) => {
                    ready!(Pin::new(fut).poll(cx));
                    this.state = SleepState::Elapsed;
                }
                SleepState::Native(fut) => {
                    ready!(fut.as_mut().poll(cx));
                    this.state = SleepState::Elapsed;
                }
                SleepState::Idle => {
                    if let Some(api) = injected::host() {
                        let now = Instant::now();
                        if this.deadline <= now {
                            this.state = SleepState::Elapsed;
                            continue;
                        }
                        let nanos =
                            u64::try_from((this.deadline - now).as_nanos()).unwrap_or(u64::MAX);
                        // SAFETY: `api` is the live host table; `sleep` never unwinds.
                        this.state = SleepState::Host(unsafe { (api.sleep)(api.data, nanos) });
                    } else if tokio::runtime::Handle::try_current().is_ok() {
                        this.state =
                            SleepState::Native(Box::pin(tokio::time::sleep_until(this.deadline)));
                    } else {
                        panic!(
                            "`horizon_plugin_sdk::rt::time::Sleep` was polled with no Horizon host attached \
                             and outside a tokio runtime: load the plugin with \
                             `horizon_plugin_host::PluginHost`, or poll it inside a tokio runtime"
                        );
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Error types, like `tokio::time::error`.
pub mod error {
    use std::fmt;

    /// The deadline of a [`timeout`](super::timeout) elapsed first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Elapsed(pub(crate) ());

    impl fmt::Display for Elapsed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("deadline has elapsed")
        }
    }

    impl std::error::Error for Elapsed {}

    impl From<Elapsed> for crate::PluginError {
        fn from(e: Elapsed) -> Self {
            crate::PluginError::new(e)
        }
    }

    impl From<Elapsed> for std::io::Error {
        fn from(e: Elapsed) -> Self {
            std::io::Error::new(std::io::ErrorKind::TimedOut, e)
        }
    }
}

/// Requires `future` to complete within `duration`.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{sleep, timeout, Duration};
/// assert!(timeout(Duration::from_millis(1), sleep(Duration::from_secs(5))).await.is_err());
/// assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await.unwrap(), 7);
/// # }
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(Instant::now() + duration, future)
}

/// Requires `future` to complete before `deadline`.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{timeout_at, Duration, Instant};
/// let deadline = Instant::now() + Duration::from_secs(1);
/// assert_eq!(timeout_at(deadline, async { "done" }).await, Ok("done"));
/// # }
/// ```
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        value: future,
        delay: sleep_until(deadline),
    }
}

pin_project_lite::pin_project! {
    /// Future returned by [`timeout`] and [`timeout_at`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        value: F,
        delay: Sleep,
    }
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.value
    }

    /// The wrapped future, mutably.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.value
    }

    /// Consumes the timeout, returning the wrapped future.
    pub fn into_inner(self) -> F {
        self.value
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, error::Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.value.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.delay)
            .poll(cx)
            .map(|()| Err(error::Elapsed(())))
    }
}

/// Ticks every `period`, the first tick completing at once.
///
/// # Panics
/// If `period` is zero.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{interval, Duration};
/// let mut ticks = interval(Duration::from_millis(2));
/// ticks.tick().await; // at once
/// ticks.tick().await; // 2 ms later
/// # }
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
/// If `period` is zero.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use horizon_plugin_sdk::rt::time::{interval_at, Duration, Instant, MissedTickBehavior};
/// let start = Instant::now() + Duration::from_millis(2);
/// let mut ticks = interval_at(start, Duration::from_millis(2));
/// ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
/// assert_eq!(ticks.tick().await, start);
/// # }
/// ```
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(period > Duration::ZERO, "`period` must be non-zero.");
    Interval {
        delay: sleep_until(start),
        period,
        missed_tick_behavior: MissedTickBehavior::Burst,
    }
}

/// A stream of ticks, like `tokio::time::Interval`.
#[derive(Debug)]
pub struct Interval {
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Completes when the next tick is due, returning its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        ready!(Pin::new(&mut self.delay).poll(cx));
        let timeout = self.delay.deadline();
        let now = Instant::now();
        // Same rule as tokio: a tick more than 5 ms late counts as missed.
        let next = if now.saturating_duration_since(timeout) > Duration::from_millis(5) {
            next_after_missed(self.missed_tick_behavior, timeout, now, self.period)
        } else {
            timeout + self.period
        };
        Pin::new(&mut self.delay).reset(next);
        Poll::Ready(timeout)
    }

    /// Resets the interval so the next tick is one period from now.
    pub fn reset(&mut self) {
        Pin::new(&mut self.delay).reset(Instant::now() + self.period);
    }

    /// Resets the interval so the next tick completes at once.
    pub fn reset_immediately(&mut self) {
        Pin::new(&mut self.delay).reset(Instant::now());
    }

    /// Resets the interval so the next tick is `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        Pin::new(&mut self.delay).reset(Instant::now() + after);
    }

    /// Resets the interval so the next tick is at `deadline`.
    pub fn reset_at(&mut self, deadline: Instant) {
        Pin::new(&mut self.delay).reset(deadline);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What happens when ticks are missed.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets what happens when ticks are missed.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}

fn next_after_missed(
    behavior: MissedTickBehavior,
    timeout: Instant,
    now: Instant,
    period: Duration,
) -> Instant {
    match behavior {
        MissedTickBehavior::Delay => now + period,
        MissedTickBehavior::Skip => {
            let late = u64::try_from((now - timeout).as_nanos()).unwrap_or(u64::MAX);
            let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
            now + period - Duration::from_nanos(late % period_ns)
        }
        // `Burst`, and any behaviour tokio adds later.
        _ => timeout + period,
    }
}
