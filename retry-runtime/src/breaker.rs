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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::{shard_of_this_thread, Shard, SAMPLE_EVERY, SHARDS};
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
/// `consecutive_failures` of them, or past its [`failure_ratio`](CircuitBreaker::failure_ratio)
/// if it has one, it opens: retries are refused and the error goes to the caller
/// at once, so a database that is down is not hit by every caller's retries. By default the first
/// attempt of each call still runs; with `fail_fast = true` in the attribute, calls return
/// [`CircuitOpen`] without running. After `open_for` it is half-open: calls go through as probes
/// (with `fail_fast`, at most `probes` at a time), `probes` successes close it, and one counted
/// failure opens it again.
///
/// A failure counts only if its call started after the breaker last changed state: a call
/// started while the breaker was open that fails once it is half-open says nothing about the
/// database now.
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
    /// Changes of state so far: what a call notes when it starts, so that a failure of a call
    /// from before the last change is not held against the state after it.
    generation: AtomicU32,
    /// The failure-ratio threshold, if one was asked for.
    ratio: Option<Ratio>,
    /// Attempts started, per shard, counted only with a ratio threshold: a load and a store on
    /// the thread's own counter, as the retry budget counts first attempts.
    attempts: [Shard; SHARDS],
    cold: Mutex<Cold>,
}

/// Open when at least `percent` % of at least `minimum` attempts in the last `window` failed.
#[derive(Clone, Copy, Debug)]
struct Ratio {
    percent: u64,
    minimum: u64,
    window: Duration,
}

/// The ratio's window as slots, each `window / SLOTS` long.
const SLOTS: usize = 10;

#[derive(Clone, Copy)]
struct Slot {
    /// Which slot since the epoch; `u64::MAX` for never used.
    tick: u64,
    /// Attempts counted when the slot was first touched: a lower bound of the attempts since.
    attempts_at_start: u64,
    failures: u64,
}

const UNUSED: Slot = Slot {
    tick: u64::MAX,
    attempts_at_start: 0,
    failures: 0,
};

/// What only state changes need.
struct Cold {
    /// When the breaker last opened, or went half-open.
    since: Option<Instant>,
    /// Probes [`CircuitBreaker::admit`] handed out in this half-open spell and not yet returned.
    probes_out: u32,
    /// Successes seen in this half-open spell.
    successes: u32,
    /// The ratio's window: counted failures and the attempts count, by slot.
    epoch: Option<Instant>,
    slots: [Slot; SLOTS],
}

impl Cold {
    /// The slot `now` falls in, started from `attempts` if it is new; its tick.
    fn touch(&mut self, ratio: &Ratio, now: Instant, attempts: u64) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let slot_length = (ratio.window / SLOTS as u32).as_nanos().max(1);
        let tick = (now.saturating_duration_since(epoch).as_nanos() / slot_length) as u64;
        let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
        if slot.tick != tick {
            *slot = Slot {
                tick,
                attempts_at_start: attempts,
                failures: 0,
            };
        }
        tick
    }

    /// Failures and attempts over the window ending in slot `tick`.
    fn window(&self, tick: u64, attempts: u64) -> (u64, u64) {
        let in_window = |slot: &&Slot| slot.tick != u64::MAX && slot.tick + (SLOTS as u64) > tick;
        let since = self
            .slots
            .iter()
            .filter(in_window)
            .map(|slot| slot.attempts_at_start)
            .min()
            .unwrap_or(attempts);
        let failures = self
            .slots
            .iter()
            .filter(in_window)
            .map(|s| s.failures)
            .sum();
        (failures, attempts.saturating_sub(since))
    }
}

const STATE_SHIFT: u32 = 32;
const RUN_MASK: u64 = (1 << STATE_SHIFT) - 1;

/// At most two changes happen under one lock (open → half-open, then half-open → closed or
/// open); they are announced once the lock is released.
type Changes = [Option<(BreakerState, BreakerState)>; 2];

/// What a failed attempt did to the breaker, for the retry driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// Closed: retries go ahead.
    No,
    /// Open or half-open: no retry.
    Refusing(BreakerState),
}

/// A call's standing with its breaker, taken before its first attempt
/// ([`CircuitBreaker::enter`], [`CircuitBreaker::admit`]) and held until it returns: which
/// state it started in, and whether it holds one of a half-open breaker's probes, given back
/// when this is dropped (also when the call is cancelled).
#[derive(Debug)]
#[must_use = "the admission is the call's place: hold it until the call returns"]
pub struct Admission {
    breaker: Option<&'static CircuitBreaker>,
    generation: u32,
    probe: bool,
}

impl Admission {
    /// The admission of a call without a breaker.
    pub const NONE: Admission = Admission {
        breaker: None,
        generation: 0,
        probe: false,
    };

    pub(crate) fn generation(&self) -> Option<u32> {
        self.breaker.map(|_| self.generation)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (true, Some(breaker)) = (self.probe, self.breaker) {
            breaker.return_probe(self.generation);
        }
    }
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
            generation: AtomicU32::new(0),
            ratio: None,
            attempts: [const { Shard(AtomicU64::new(0)) }; SHARDS],
            cold: Mutex::new(Cold {
                since: None,
                probes_out: 0,
                successes: 0,
                epoch: None,
                slots: [UNUSED; SLOTS],
            }),
        }
    }

    /// Also open when at least `percent` % of the attempts in the last `window` failed with a
    /// class that counts, once there were at least `minimum_attempts` of them (`percent` above
    /// 100 is taken as 100, 0 as 1; a `window` under 10 ms as 10 ms). Counting attempts costs
    /// each call a load and a store on a counter of its thread's.
    pub const fn failure_ratio(
        mut self,
        percent: u32,
        minimum_attempts: u32,
        window: Duration,
    ) -> Self {
        let percent = if percent == 0 {
            1
        } else if percent > 100 {
            100
        } else {
            percent
        };
        let minimum = Duration::from_millis(10);
        self.ratio = Some(Ratio {
            percent: percent as u64,
            minimum: minimum_attempts as u64,
            window: if window.as_nanos() < minimum.as_nanos() {
                minimum
            } else {
                window
            },
        });
        self
    }

    /// The failure-ratio threshold: percent, minimum attempts, window.
    pub fn failure_ratio_threshold(&self) -> Option<(u32, u32, Duration)> {
        self.ratio
            .map(|ratio| (ratio.percent as u32, ratio.minimum as u32, ratio.window))
    }

    /// Changes of state so far.
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Count an attempt for the ratio threshold (nothing without one). A call inside another
    /// retried call's attempt on the same breaker is part of that attempt, counted already.
    #[inline(always)]
    pub(crate) fn count_attempt(&self) {
        if let Some(ratio) = &self.ratio {
            if crate::layers::enclosing_call_reports_to(self) {
                return;
            }
            let shard = &self.attempts[shard_of_this_thread()].0;
            let count = shard.load(Ordering::Relaxed).wrapping_add(1);
            shard.store(count, Ordering::Relaxed);
            if count.is_multiple_of(SAMPLE_EVERY) {
                self.sample(ratio);
            }
        }
    }

    /// Note the attempts count in the current slot, so a failure after a quiet spell finds the
    /// attempts that came before it. Never waits for the lock.
    #[cold]
    #[inline(never)]
    fn sample(&self, ratio: &Ratio) {
        let attempts = self.attempts();
        if let Ok(mut cold) = self.cold.try_lock() {
            cold.touch(ratio, Instant::now(), attempts);
        }
    }

    fn attempts(&self) -> u64 {
        self.attempts
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
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

    /// Counted failures in a row that open the breaker ([`consecutive_failures`]).
    ///
    /// [`consecutive_failures`]: CircuitBreaker::consecutive_failures
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// How long the breaker stays open before probing ([`open_for`]).
    ///
    /// [`open_for`]: CircuitBreaker::open_for
    pub fn open_duration(&self) -> Duration {
        self.open_for
    }

    /// Successful probes that close the breaker ([`probes`]).
    ///
    /// [`probes`]: CircuitBreaker::probes
    pub fn probe_count(&self) -> u32 {
        self.probes
    }

    /// Where the breaker stands now; an open breaker whose open duration has passed reads as
    /// half-open. Cheap enough for a `/health` handler.
    pub fn state(&self) -> BreakerState {
        let state = self.state_word();
        if state == BreakerState::Closed {
            return state;
        }
        let mut changes = Changes::default();
        let state = {
            let mut cold = self.lock();
            self.state_at(&mut cold, Instant::now(), &mut changes)
        };
        self.announce(changes);
        state
    }

    /// Whether a class counts toward opening the breaker.
    pub const fn counts(class: ErrorClass) -> bool {
        matches!(class, ErrorClass::Connect | ErrorClass::Unavailable)
    }

    fn state_word(&self) -> BreakerState {
        BreakerState::from_bits(self.word.load(Ordering::Acquire) >> STATE_SHIFT)
    }

    /// A call starting that runs whatever the breaker says (without `fail_fast`): notes the
    /// breaker's generation, so its failures count only against the state it started in.
    #[inline]
    pub fn enter(&'static self) -> Admission {
        self.count_attempt();
        if self.state_word() != BreakerState::Closed {
            // An open breaker whose time is up is half-open now: start in that spell.
            self.state();
        }
        Admission {
            breaker: Some(self),
            generation: self.generation.load(Ordering::Acquire),
            probe: false,
        }
    }

    /// May a call start? Closed, yes; half-open, while fewer than `probes` calls are probing
    /// (the [`Admission`] holds the place until it is dropped); open, no: [`CircuitOpen`]. What
    /// `fail_fast = true` asks before the first attempt; a hand-written caller may ask the same.
    /// A call inside another retried call's attempt on the same breaker goes with that call and
    /// takes no place of its own.
    #[inline]
    pub fn admit(&'static self) -> Result<Admission, CircuitOpen> {
        if self.state_word() == BreakerState::Closed {
            return Ok(self.enter());
        }
        self.admit_slow()
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(&'static self) -> Result<Admission, CircuitOpen> {
        if crate::layers::enclosing_call_reports_to(self) {
            return Ok(self.enter());
        }
        let mut changes = Changes::default();
        let admitted = {
            let now = Instant::now();
            let mut cold = self.lock();
            let state = self.state_at(&mut cold, now, &mut changes);
            // Read under the lock, so the probe belongs to the spell it took its place in.
            let generation = self.generation.load(Ordering::Acquire);
            // A probe that hangs (a statement that never returns, a future never dropped) would
            // hold its place for good: once a whole open duration has passed without an
            // answer, the places are handed out again.
            let since = cold.since.unwrap_or(now);
            if state == BreakerState::HalfOpen
                && cold.probes_out >= self.probes
                && now.saturating_duration_since(since) >= self.open_for
            {
                cold.since = Some(now);
                cold.probes_out = 0;
            }
            // The admission is made under the lock, so nothing between taking a place and
            // owning it (a subscriber's panic, say) can lose the place.
            match state {
                BreakerState::Closed => Ok(Admission {
                    breaker: Some(self),
                    generation,
                    probe: false,
                }),
                BreakerState::HalfOpen if cold.probes_out < self.probes => {
                    cold.probes_out += 1;
                    Ok(Admission {
                        breaker: Some(self),
                        generation,
                        probe: true,
                    })
                }
                state => Err(CircuitOpen {
                    breaker: self.name,
                    state,
                }),
            }
        };
        if admitted.is_ok() {
            self.count_attempt();
        }
        self.announce(changes);
        admitted
    }

    /// A probe's call returned (or was dropped): its place is free again, if the spell it was
    /// taken in is still on.
    fn return_probe(&self, generation: u32) {
        let mut cold = self.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            cold.probes_out = cold.probes_out.saturating_sub(1);
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
        let mut changes = Changes::default();
        {
            let now = Instant::now();
            let mut cold = self.lock();
            match self.state_at(&mut cold, now, &mut changes) {
                BreakerState::Closed => self.store(BreakerState::Closed, 0),
                // A call that started before the breaker opened proves nothing about now.
                BreakerState::Open => {}
                BreakerState::HalfOpen => {
                    cold.successes += 1;
                    if cold.successes >= self.probes {
                        changes[1] = self.change(&mut cold, BreakerState::Closed, now);
                    }
                }
            }
        }
        self.announce(changes);
    }

    /// Note a failed attempt of `class` by a call that started now, and say where the breaker
    /// stands after it. Classes that do not count change nothing.
    pub fn record_failure(&self, class: ErrorClass) -> BreakerState {
        let generation = self.generation.load(Ordering::Acquire);
        match self.failed(class, Some(generation)) {
            Tripped::No => BreakerState::Closed,
            Tripped::Refusing(state) => state,
        }
    }

    /// A failed attempt of a call that started in `generation` (`None`: unknown, counted).
    pub(crate) fn failed(&self, class: ErrorClass, generation: Option<u32>) -> Tripped {
        // The common failures (a unique violation, a deadlock) leave a closed breaker alone
        // without its lock or the clock.
        if !Self::counts(class) {
            return match self.state_word() {
                BreakerState::Closed => Tripped::No,
                _ => match self.state() {
                    BreakerState::Closed => Tripped::No,
                    state => Tripped::Refusing(state),
                },
            };
        }
        let mut changes = Changes::default();
        let tripped = {
            let now = Instant::now();
            let mut cold = self.lock();
            let state = self.state_at(&mut cold, now, &mut changes);
            let current = self.generation.load(Ordering::Acquire);
            let stale = generation.is_some_and(|generation| generation != current);
            match state {
                _ if stale => match state {
                    BreakerState::Closed => Tripped::No,
                    state => Tripped::Refusing(state),
                },
                BreakerState::Closed => {
                    let run = (self.word.load(Ordering::Acquire) & RUN_MASK) as u32 + 1;
                    if run >= self.threshold || self.ratio_reached(&mut cold, now) {
                        changes[1] = self.change(&mut cold, BreakerState::Open, now);
                        Tripped::Refusing(BreakerState::Open)
                    } else {
                        self.store(BreakerState::Closed, run);
                        Tripped::No
                    }
                }
                BreakerState::HalfOpen => {
                    changes[1] = self.change(&mut cold, BreakerState::Open, now);
                    Tripped::Refusing(BreakerState::Open)
                }
                // Failures of calls made while open do not extend it: the open duration counts
                // from the trip, so probing starts on time.
                BreakerState::Open => Tripped::Refusing(BreakerState::Open),
            }
        };
        self.announce(changes);
        tripped
    }

    /// With a ratio threshold, note a counted failure and say whether the window's failures
    /// reach the ratio.
    fn ratio_reached(&self, cold: &mut Cold, now: Instant) -> bool {
        let Some(ratio) = &self.ratio else {
            return false;
        };
        let attempts = self.attempts();
        // A slot this failure starts begins before its attempt, which was counted already.
        let tick = cold.touch(ratio, now, attempts.saturating_sub(1));
        cold.slots[(tick % SLOTS as u64) as usize].failures += 1;
        let (failures, attempts) = cold.window(tick, attempts);
        attempts >= ratio.minimum.max(1) && failures * 100 >= ratio.percent * attempts
    }

    /// Whether a retry may go ahead: only while closed.
    pub(crate) fn allows_retries(&self) -> bool {
        self.state_word() == BreakerState::Closed
    }

    /// The state, moving an open breaker whose time is up to half-open (noted in `changes`).
    fn state_at(&self, cold: &mut Cold, now: Instant, changes: &mut Changes) -> BreakerState {
        let state = self.state_word();
        if state == BreakerState::Open {
            let since = cold.since.unwrap_or(now);
            if now.saturating_duration_since(since) >= self.open_for {
                changes[0] = self.change(cold, BreakerState::HalfOpen, now);
                return BreakerState::HalfOpen;
            }
        }
        state
    }

    fn change(
        &self,
        cold: &mut Cold,
        to: BreakerState,
        now: Instant,
    ) -> Option<(BreakerState, BreakerState)> {
        let from = self.state_word();
        cold.since = Some(now);
        cold.probes_out = 0;
        cold.successes = 0;
        // A closed breaker judges its ratio afresh, on what happens after the change.
        cold.slots = [UNUSED; SLOTS];
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.store(to, 0);
        Some((from, to))
    }

    /// Say what changed, with the lock released: a subscriber or recorder may take its time, or
    /// call a function that uses this very breaker.
    fn announce(&self, changes: Changes) {
        for (from, to) in changes.into_iter().flatten() {
            events::breaker_changed(self.name, from, to, self.threshold, self.open_for);
            // The gauge says where the breaker stands now, whatever order two threads'
            // announcements arrive in.
            crate::metrics::breaker_changed(self.name, from, to, self.state_word());
        }
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
