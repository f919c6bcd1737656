//! The retry budget: retries may add only so much to the load of first attempts, so that a
//! database that is down, or coming back, is not hit by every caller retrying every call.
//!
//! Every call deposits one first attempt; a retry is granted while the retries of the last
//! window stay within a share of the first attempts of that window plus a floor (so a quiet
//! service can still retry at all; like Finagle's, the floor of a whole window may go out at
//! once). The deposit is the only work on the happy path: a load and a store, no lock and no
//! clock. Everything that needs time (the window) happens when a retry is asked for, under a
//! lock only failing calls take, and once every 256 deposits of a thread, when the count is
//! sampled so the window knows how many first attempts came before the first failure.
//!
//! tower's `TpsBudget` does the same accounting, but takes a lock and reads the clock on every
//! deposit, which the happy path cannot afford.
//!
//! The deposit is a plain load and store on one of [`SHARDS`] counters that threads take in
//! turn: a locked read-modify-write measured 7–10 ns per call here, and one counter shared by
//! every thread would bounce between their caches. Shards are not given back, so with more
//! than 16 threads over a process's life some share one, and a thread preempted between its
//! load and its store can overwrite the other's deposits: the budget then counts fewer first
//! attempts than there were, and grants fewer retries than it should.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The window is kept as this many slots, each `window / SLOTS` long.
const SLOTS: usize = 10;

/// Deposit counters per budget; threads take them in turn.
pub(crate) const SHARDS: usize = 16;

/// One thread's (or a few threads') deposits, alone on its cache lines.
#[repr(align(128))]
pub(crate) struct Shard(pub(crate) AtomicU64);

thread_local! {
    /// This thread's shard, taken the first time it deposits.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
pub(crate) fn shard_of_this_thread() -> usize {
    SHARD.with(|shard| match shard.get() {
        usize::MAX => {
            let taken = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(taken);
            taken
        }
        taken => taken,
    })
}

/// How many retries may add to first attempts, per process or per group of functions.
///
/// Every `#[db_retry]` function and every [`retry`](crate::retry) call draws on
/// [`RetryBudget::global`] unless told otherwise: `budget = path::to::STATIC` names a budget of
/// your own, `budget = none` opts out (the builder's [`budget`] and [`no_budget`]).
///
/// [`budget`]: crate::RetryPolicyBuilder::budget
/// [`no_budget`]: crate::RetryPolicyBuilder::no_budget
///
/// ```
/// use std::time::Duration;
/// use db_retry_runtime::RetryBudget;
///
/// /// Orders may retry more: half again their first attempts, and at least 20 a second.
/// static ORDERS: RetryBudget = RetryBudget::new(50, 20, Duration::from_secs(10));
/// ```
pub struct RetryBudget {
    /// First attempts started under this budget, ever, per shard: all the happy path touches.
    deposits: [Shard; SHARDS],
    /// Retries may add this percentage of the window's first attempts.
    percent: u64,
    /// ... and this many per second of the window regardless.
    floor_per_second: u64,
    /// The floor over the whole window, rounded up.
    floor: u64,
    window: Duration,
    ledger: Mutex<Ledger>,
    /// When an exhausted budget last said so (in slots since the ledger's epoch, plus one), so
    /// it says so at most once a slot instead of once per call.
    last_report: AtomicU64,
    suppressed: AtomicU64,
}

/// The cold side: which retries were granted when, and how many first attempts there had been.
struct Ledger {
    epoch: Option<Instant>,
    /// The newest slot seen.
    newest: u64,
    slots: [Slot; SLOTS],
}

impl Ledger {
    /// Start slot `tick` if it is not the one its place in the ring holds, counting from
    /// `deposits`.
    fn touch(&mut self, tick: u64, deposits: u64) {
        let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
        if slot.tick != tick {
            *slot = Slot {
                tick,
                deposits_at_start: deposits,
                retries: 0,
            };
        }
    }
}

/// Every how many deposits a thread samples the count.
pub(crate) const SAMPLE_EVERY: u64 = 256;

/// `per_second` over `window`, rounded up, without overflow.
const fn floor_over(per_second: u32, window: Duration) -> u64 {
    let nanos = per_second as u128 * window.as_nanos();
    let total = nanos.div_ceil(1_000_000_000);
    if total > u64::MAX as u128 {
        u64::MAX
    } else {
        total as u64
    }
}

#[derive(Clone, Copy)]
struct Slot {
    /// Which slot since the epoch this is; `u64::MAX` for never used.
    tick: u64,
    /// `deposits` when a retry was first asked for in this slot: a lower bound of the first
    /// attempts since, so the budget errs on the side of fewer retries.
    deposits_at_start: u64,
    retries: u64,
}

impl Slot {
    const UNUSED: Slot = Slot {
        tick: u64::MAX,
        deposits_at_start: 0,
        retries: 0,
    };
}

/// What [`RetryBudget::withdraw`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Withdrawal {
    /// The retry may go ahead.
    Granted,
    /// The budget is spent: no retry. `report` carries how many refusals went unreported since
    /// the last report, when this one should be reported (at most once per slot).
    Refused { report: Option<u64> },
}

impl RetryBudget {
    /// The process-wide budget every function draws on unless told otherwise: retries may add
    /// 20 % to the first attempts of the last 10 s, and 10 retries a second regardless (the
    /// defaults of Finagle's retry budget).
    pub fn global() -> &'static RetryBudget {
        &GLOBAL
    }

    /// A budget: retries may add `percent` % of the first attempts of the last `window`, and
    /// `floor_per_second` retries per second of it regardless. A `window` shorter than 10 ms is
    /// taken as 10 ms.
    pub const fn new(percent: u32, floor_per_second: u32, window: Duration) -> Self {
        let minimum = Duration::from_millis(10);
        RetryBudget {
            deposits: [const { Shard(AtomicU64::new(0)) }; SHARDS],
            percent: percent as u64,
            floor_per_second: floor_per_second as u64,
            floor: floor_over(floor_per_second, window),
            window: if window.as_nanos() < minimum.as_nanos() {
                minimum
            } else {
                window
            },
            ledger: Mutex::new(Ledger {
                epoch: None,
                newest: 0,
                slots: [Slot::UNUSED; SLOTS],
            }),
            last_report: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `budget` itself: what `budget = path` in the attribute names, checked to be a
    /// `static RetryBudget` where the path is written.
    #[doc(hidden)]
    pub const fn named(budget: &'static RetryBudget) -> &'static RetryBudget {
        budget
    }

    /// Count a first attempt on this thread's counter: a load and a store, no lock prefix.
    #[inline(always)]
    pub fn deposit(&self) {
        let shard = &self.deposits[shard_of_this_thread()].0;
        let count = shard.load(Ordering::Relaxed).wrapping_add(1);
        shard.store(count, Ordering::Relaxed);
        if count.is_multiple_of(SAMPLE_EVERY) {
            self.sample(Instant::now());
        }
    }

    /// Note the count of first attempts in the current slot, so that a failure after a quiet
    /// spell of failures finds the first attempts that came before it. Never waits for the
    /// lock: a sample missed is a sample taken a little later.
    #[cold]
    #[inline(never)]
    fn sample(&self, now: Instant) {
        let deposits = self.deposits();
        if let Ok(mut ledger) = self.ledger.try_lock() {
            let tick = self.tick(&mut ledger, now);
            ledger.touch(tick, deposits);
        }
    }

    /// Which slot since the ledger's epoch `now` falls in; never earlier than the newest slot
    /// seen, so a caller whose clock read is stale cannot reset a newer slot.
    fn tick(&self, ledger: &mut Ledger, now: Instant) -> u64 {
        let epoch = *ledger.epoch.get_or_insert(now);
        let tick = (now.saturating_duration_since(epoch).as_nanos()
            / self.slot_length().as_nanos().max(1)) as u64;
        let tick = tick.max(ledger.newest);
        ledger.newest = tick;
        tick
    }

    /// First attempts counted so far (the odd one lost between threads that share a counter
    /// aside).
    pub fn deposits(&self) -> u64 {
        self.deposits
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The share of first attempts retries may add, in percent.
    pub fn percent(&self) -> u32 {
        self.percent as u32
    }

    /// Retries granted per second of the window regardless of first attempts.
    pub fn floor_per_second(&self) -> u32 {
        self.floor_per_second as u32
    }

    /// How far back first attempts and retries count.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn slot_length(&self) -> Duration {
        self.window / SLOTS as u32
    }

    /// Ask for one retry at `now`.
    pub(crate) fn withdraw(&self, now: Instant) -> Withdrawal {
        let deposits = self.deposits();
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let tick = self.tick(&mut ledger, now);
        ledger.touch(tick, deposits);
        let in_window = |slot: &&Slot| slot.tick != u64::MAX && slot.tick + (SLOTS as u64) > tick;
        let since = ledger
            .slots
            .iter()
            .filter(in_window)
            .map(|slot| slot.deposits_at_start)
            .min()
            .unwrap_or(deposits);
        let retries: u64 = ledger
            .slots
            .iter()
            .filter(in_window)
            .map(|s| s.retries)
            .sum();
        let first_attempts = deposits.saturating_sub(since);
        let allowed = self
            .floor
            .saturating_add(first_attempts.saturating_mul(self.percent) / 100);
        if retries < allowed {
            ledger.slots[(tick % SLOTS as u64) as usize].retries += 1;
            return Withdrawal::Granted;
        }
        drop(ledger);
        // Say so once a slot, with how many refusals went unsaid in between.
        let mark = tick + 1;
        let last = self.last_report.load(Ordering::Relaxed);
        let report = if last != mark
            && self
                .last_report
                .compare_exchange(last, mark, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        };
        Withdrawal::Refused { report }
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("percent", &self.percent)
            .field("floor_per_second", &self.floor_per_second)
            .field("window", &self.window)
            .field("deposits", &self.deposits())
            .finish_non_exhaustive()
    }
}

static GLOBAL: RetryBudget = RetryBudget::new(20, 10, Duration::from_secs(10));

/// Which budget a policy draws on.
#[derive(Clone, Copy, Debug)]
pub enum BudgetChoice {
    /// [`RetryBudget::global`].
    Global,
    /// None: retries are limited by `max` and `deadline` only.
    Unlimited,
    /// A budget of the application's.
    Named(&'static RetryBudget),
}

impl BudgetChoice {
    /// The budget, if any.
    #[inline(always)]
    pub fn budget(self) -> Option<&'static RetryBudget> {
        match self {
            BudgetChoice::Global => Some(&GLOBAL),
            BudgetChoice::Unlimited => None,
            BudgetChoice::Named(budget) => Some(budget),
        }
    }
}

impl PartialEq for BudgetChoice {
    /// The same budget, by identity.
    fn eq(&self, other: &Self) -> bool {
        match (self.budget(), other.budget()) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for BudgetChoice {}
