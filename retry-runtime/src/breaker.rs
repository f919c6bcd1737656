//! The circuit breaker: after a run of failures that say the database cannot be reached, stop
//! retrying (or, when asked, stop calling) for a while, then let a probe find out whether it is
//! back.
//!
//! Only [`ErrorClass::Connect`] and [`ErrorClass::Unavailable`] count: they say the server could
//! not be reached or would not serve. A lost connection does not (one terminated backend, or a
//! pooler dropping idle sockets, says nothing about the next connect; when the server is really
//! gone, the next attempt's connect fails and counts), nor does contention (two transactions
//! colliding is the server working), nor a permanent error.
//!
//! The happy path reads one atomic word and writes nothing while the breaker is closed with no
//! failure run: state changes happen under a lock that only failures, and successes right after
//! them, take. Time is read only while the breaker is not closed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::ErrorClass;
use crate::events;

/// Where a [`CircuitBreaker`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls and retries go ahead; failures are counted.
    Closed,
    /// Tripped: retries are refused (and calls, for functions that fail fast) until the open
    /// duration has passed.
    Open,
    /// The open duration has passed: the next calls are probes, and as many successes as the
    /// breaker's `probes` close it, while one counted failure opens it again. Retries are still
    /// refused.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`, as in events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    const fn bits(self) -> u64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    const fn from_bits(bits: u64) -> BreakerState {
        match bits {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a function with `fail_fast = true` returns, without running, while its breaker is
/// open. The function's error type takes it through `From<CircuitOpen>`.
///
/// It classifies as [`ErrorClass::Permanent`]: within the call, trying again cannot help, since
/// the breaker decides when calls go through again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    breaker: &'static str,
    state: BreakerState,
}

impl CircuitOpen {
    /// The name of the breaker that refused the call.
    pub fn breaker(&self) -> &'static str {
        self.breaker
    }

    /// [`BreakerState::Open`], or [`BreakerState::HalfOpen`] when every probe was taken.
    pub fn state(&self) -> BreakerState {
        self.state
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            BreakerState::HalfOpen => write!(
                f,
                "circuit breaker `{}` is half-open and its probes are taken: the call was not made",
                self.breaker
            ),
            _ => write!(
                f,
                "circuit breaker `{}` is open after repeated failures to reach the database: \
                 the call was not made",
                self.breaker
            ),
        }
    }
}

impl std::error::Error for CircuitOpen {}

/// A circuit breaker, shared by the functions that name it with `breaker = path::to::STATIC`
/// (the builder's [`breaker`](crate::RetryPolicyBuilder::breaker)).
///
/// Closed, it counts connect and unavailable failures in a row (a success ends the run). After
/// `consecutive_failures` of them it opens: retries are refused and the error goes to the caller
/// at once, so a database that is down is not hit by every caller's retries. By default the first
/// attempt of each call still runs; with `fail_fast = true` in the attribute, calls return
/// [`CircuitOpen`] without running. After `open_for` it is half-open: calls go through as probes
/// (with `fail_fast`, at most `probes` at a time), `probes` successes close it, and one counted
/// failure opens it again.
///
/// ```
/// use std::time::Duration;
/// use db_retry_runtime::CircuitBreaker;
///
/// /// Opens after 5 connect or unavailable failures in a row, stays open 10 s, then lets 2
/// /// probes through.
/// static PRIMARY: CircuitBreaker = CircuitBreaker::new("primary")
///     .consecutive_failures(5)
///     .open_for(Duration::from_secs(10))
///     .probes(2);
/// ```
pub struct CircuitBreaker {
    name: &'static str,
    threshold: u32,
    open_for: Duration,
    probes: u32,
    /// The state in the high 32 bits and the current run of counted failures in the low 32:
    /// zero means closed with no run, the one value the happy path checks for. Written only
    /// under `cold`.
    word: AtomicU64,
    cold: Mutex<Cold>,
}

/// What only state changes need.
struct Cold {
    /// When the breaker last opened, or went half-open.
    since: Option<Instant>,
    /// Probes handed out by [`CircuitBreaker::admit`] in this half-open spell.
    probes_out: u32,
    /// Successes seen in this half-open spell.
    successes: u32,
}

const STATE_SHIFT: u32 = 32;
const RUN_MASK: u64 = (1 << STATE_SHIFT) - 1;

/// What a failed attempt did to the breaker, for the retry driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// Closed: retries go ahead.
    No,
    /// Open or half-open: no retry.
    Refusing(BreakerState),
}

impl CircuitBreaker {
    /// A breaker with the defaults: opens after 5 connect or unavailable failures in a row,
    /// stays open 5 s, then closes after 1 successful probe. `name` appears in events, metrics
    /// and [`CircuitOpen`].
    pub const fn new(name: &'static str) -> Self {
        CircuitBreaker {
            name,
            threshold: 5,
            open_for: Duration::from_secs(5),
            probes: 1,
            word: AtomicU64::new(0),
            cold: Mutex::new(Cold {
                since: None,
                probes_out: 0,
                successes: 0,
            }),
        }
    }

    /// Open after `failures` connect or unavailable failures in a row (0 is taken as 1).
    pub const fn consecutive_failures(mut self, failures: u32) -> Self {
        self.threshold = if failures == 0 { 1 } else { failures };
        self
    }

    /// Stay open this long before letting probes through (less than 1 ms is taken as 1 ms).
    pub const fn open_for(mut self, duration: Duration) -> Self {
        let minimum = Duration::from_millis(1);
        self.open_for = if duration.as_nanos() < minimum.as_nanos() {
            minimum
        } else {
            duration
        };
        self
    }

    /// Close after this many successful probes (0 is taken as 1); with `fail_fast`, also how
    /// many calls may probe at once.
    pub const fn probes(mut self, probes: u32) -> Self {
        self.probes = if probes == 0 { 1 } else { probes };
        self
    }

    /// `breaker` itself: what `breaker = path` in the attribute names, checked to be a
    /// `static CircuitBreaker` where the path is written.
    #[doc(hidden)]
    pub const fn named(breaker: &'static CircuitBreaker) -> &'static CircuitBreaker {
        breaker
    }

    /// The name given to [`CircuitBreaker::new`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counted failures in a row that open the breaker.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// How long the breaker stays open before probing.
    pub fn open_duration(&self) -> Duration {
        self.open_for
    }

    /// Successful probes that close the breaker.
    pub fn probe_count(&self) -> u32 {
        self.probes
    }

    /// Where the breaker stands now; an open breaker whose open duration has passed reads as
    /// half-open. Cheap enough for a `/health` handler.
    pub fn state(&self) -> BreakerState {
        let state = BreakerState::from_bits(self.word.load(Ordering::Acquire) >> STATE_SHIFT);
        if state == BreakerState::Closed {
            return state;
        }
        let mut cold = self.lock();
        self.state_at(&mut cold, Instant::now())
    }

    /// Whether a class counts toward opening the breaker.
    pub const fn counts(class: ErrorClass) -> bool {
        matches!(class, ErrorClass::Connect | ErrorClass::Unavailable)
    }

    /// May a call start? `Ok` while closed, and in a half-open spell for up to `probes` calls;
    /// [`CircuitOpen`] otherwise. What `fail_fast = true` asks before the first attempt; a
    /// hand-written caller may ask the same.
    #[inline]
    pub fn admit(&self) -> Result<(), CircuitOpen> {
        if self.word.load(Ordering::Acquire) >> STATE_SHIFT == BreakerState::Closed.bits() {
            return Ok(());
        }
        self.admit_slow()
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(&self) -> Result<(), CircuitOpen> {
        let now = Instant::now();
        let mut cold = self.lock();
        match self.state_at(&mut cold, now) {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen if cold.probes_out < self.probes => {
                cold.probes_out += 1;
                Ok(())
            }
            BreakerState::HalfOpen => {
                // A probe that was cancelled never reports: once a whole open duration has
                // passed without an answer, hand the probes out again rather than wait forever.
                let since = cold.since.unwrap_or(now);
                if now.saturating_duration_since(since) >= self.open_for {
                    cold.since = Some(now);
                    cold.probes_out = 1;
                    Ok(())
                } else {
                    Err(self.refusal(BreakerState::HalfOpen))
                }
            }
            BreakerState::Open => Err(self.refusal(BreakerState::Open)),
        }
    }

    fn refusal(&self, state: BreakerState) -> CircuitOpen {
        CircuitOpen {
            breaker: self.name,
            state,
        }
    }

    /// Note a successful call. Closed with no failure run, this is one load.
    #[inline]
    pub fn record_success(&self) {
        if self.word.load(Ordering::Acquire) != 0 {
            self.success_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn success_slow(&self) {
        let now = Instant::now();
        let mut cold = self.lock();
        match self.state_at(&mut cold, now) {
            BreakerState::Closed => self.store(BreakerState::Closed, 0),
            // A call that started before the breaker opened proves nothing about now.
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                cold.successes += 1;
                if cold.successes >= self.probes {
                    self.change(&mut cold, BreakerState::Closed, now);
                }
            }
        }
    }

    /// Note a failed attempt of `class`, and say whether it may be retried as far as the breaker
    /// is concerned. Classes that do not count change nothing.
    pub fn record_failure(&self, class: ErrorClass) -> BreakerState {
        match self.failed(class) {
            Tripped::No => BreakerState::Closed,
            Tripped::Refusing(state) => state,
        }
    }

    pub(crate) fn failed(&self, class: ErrorClass) -> Tripped {
        let now = Instant::now();
        let mut cold = self.lock();
        let state = self.state_at(&mut cold, now);
        if !Self::counts(class) {
            return match state {
                BreakerState::Closed => Tripped::No,
                // A probe that ended without a verdict on the server gives its place back.
                BreakerState::HalfOpen => {
                    cold.probes_out = cold.probes_out.saturating_sub(1);
                    Tripped::Refusing(state)
                }
                BreakerState::Open => Tripped::Refusing(state),
            };
        }
        match state {
            BreakerState::Closed => {
                let run = (self.word.load(Ordering::Acquire) & RUN_MASK) as u32 + 1;
                if run >= self.threshold {
                    self.change(&mut cold, BreakerState::Open, now);
                    Tripped::Refusing(BreakerState::Open)
                } else {
                    self.store(BreakerState::Closed, run);
                    Tripped::No
                }
            }
            BreakerState::HalfOpen => {
                self.change(&mut cold, BreakerState::Open, now);
                Tripped::Refusing(BreakerState::Open)
            }
            // Failures of calls made while open do not extend it: the open duration counts from
            // the trip, so probing starts on time.
            BreakerState::Open => Tripped::Refusing(BreakerState::Open),
        }
    }

    /// Whether a retry may go ahead: only while closed.
    pub(crate) fn allows_retries(&self) -> bool {
        self.word.load(Ordering::Acquire) >> STATE_SHIFT == BreakerState::Closed.bits()
    }

    /// The state, moving an open breaker whose time is up to half-open.
    fn state_at(&self, cold: &mut Cold, now: Instant) -> BreakerState {
        let state = BreakerState::from_bits(self.word.load(Ordering::Acquire) >> STATE_SHIFT);
        if state == BreakerState::Open {
            let since = cold.since.unwrap_or(now);
            if now.saturating_duration_since(since) >= self.open_for {
                self.change(cold, BreakerState::HalfOpen, now);
                return BreakerState::HalfOpen;
            }
        }
        state
    }

    fn change(&self, cold: &mut Cold, to: BreakerState, now: Instant) {
        let from = BreakerState::from_bits(self.word.load(Ordering::Acquire) >> STATE_SHIFT);
        cold.since = Some(now);
        cold.probes_out = 0;
        cold.successes = 0;
        self.store(to, 0);
        events::breaker_changed(self.name, from, to, self.threshold, self.open_for);
        crate::metrics::breaker_changed(self.name, from, to);
    }

    fn store(&self, state: BreakerState, run: u32) {
        self.word.store(
            (state.bits() << STATE_SHIFT) | u64::from(run),
            Ordering::Release,
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cold> {
        self.cold.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Acquire);
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("threshold", &self.threshold)
            .field("open_for", &self.open_for)
            .field("probes", &self.probes)
            .field("state", &BreakerState::from_bits(word >> STATE_SHIFT))
            .field("run", &(word & RUN_MASK))
            .finish()
    }
}

/// A policy's breaker, compared by identity.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BreakerChoice(pub(crate) Option<&'static CircuitBreaker>);

impl PartialEq for BreakerChoice {
    fn eq(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for BreakerChoice {}
