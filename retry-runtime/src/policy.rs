//! What to retry and how long to wait: [`RetryPolicy`] and its builder.

use std::time::Duration;

use crate::breaker::{BreakerChoice, CircuitBreaker};
use crate::budget::{BudgetChoice, RetryBudget};
use crate::classify::ErrorClass;

use db_retry_policy::{defaults, Settings};
pub use db_retry_policy::{Backoff, Jitter, PolicyError, RetryOn, MAX_RETRIES_LIMIT};

/// A retry policy: how many retries, which errors, and the delays between attempts.
///
/// Build one with [`RetryPolicy::builder`]; [`RetryPolicy::default()`] is the attribute's
/// defaults: 3 retries of transient errors, exponential backoff from 100 ms capped at 5 s with
/// full jitter, no deadline, idempotent.
///
/// ```
/// use std::time::Duration;
/// use db_retry_runtime::{Backoff, Jitter, RetryOn, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_retries(5)
///     .retry_on(RetryOn::Contention)
///     .backoff(Backoff::Exponential)
///     .base(Duration::from_millis(20))
///     .cap(Duration::from_secs(1))
///     .jitter(Jitter::Equal)
///     .deadline(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(policy.max_retries(), 5);
/// # Ok::<(), db_retry_runtime::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) retry_on: RetryOn,
    pub(crate) backoff: Backoff,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) deadline: Option<Duration>,
    pub(crate) idempotent: bool,
    pub(crate) seed: Option<u64>,
    pub(crate) budget: BudgetChoice,
    pub(crate) breaker: BreakerChoice,
    pub(crate) name: Option<&'static str>,
}

impl RetryPolicy {
    /// The defaults of the attribute (see the type's docs).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_retries: defaults::MAX_RETRIES,
        retry_on: defaults::RETRY_ON,
        backoff: defaults::BACKOFF,
        base: defaults::BASE,
        cap: defaults::CAP,
        jitter: defaults::JITTER,
        deadline: None,
        idempotent: defaults::IDEMPOTENT,
        seed: None,
        budget: BudgetChoice::Global,
        breaker: BreakerChoice(None),
        name: None,
    };

    /// Start building a policy from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            settings: Settings::default(),
            seed: None,
            budget: BudgetChoice::Global,
            breaker: BreakerChoice(None),
            name: None,
        }
    }

    /// Retries after the first attempt (so up to `max_retries + 1` attempts).
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
    /// Which classes are retried.
    pub fn retry_on(&self) -> RetryOn {
        self.retry_on
    }
    /// How delays grow.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }
    /// The ceiling of any single delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }
    /// How delays are randomised.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }
    /// The time after which no new attempt starts, counted from the start of the call.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
    /// Whether an error after which the statement may have run is retried.
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// Whether this policy retries an error of `class` by the class alone: covered by `on`, and
    /// not a lost connection (which may have run the statement) unless the policy is
    /// idempotent. Ignores the attempt count and the deadline, and where the attempt stood: with
    /// `idempotent(false)` that decides too (see [`crate::Retrier::retry_after_in_phase`]).
    pub fn retries_class(&self, class: ErrorClass) -> bool {
        self.retry_on.covers(class) && (self.idempotent || !class.may_have_run())
    }

    /// A policy the macro has already validated at compile time.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __from_validated(
        max_retries: u32,
        retry_on: RetryOn,
        backoff: Backoff,
        base: Duration,
        cap: Duration,
        jitter: Jitter,
        deadline: Option<Duration>,
        idempotent: bool,
    ) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            retry_on,
            backoff,
            base,
            cap,
            jitter,
            deadline,
            idempotent,
            seed: None,
            budget: BudgetChoice::Global,
            breaker: BreakerChoice(None),
            name: None,
        }
    }

    /// The same policy named for its function, as events and metrics say it.
    #[doc(hidden)]
    pub const fn __named(self, name: &'static str) -> RetryPolicy {
        RetryPolicy {
            name: Some(name),
            ..self
        }
    }

    /// The name events and metrics give calls under this policy: the function's path for
    /// `#[db_retry]`, what [`RetryPolicyBuilder::name`] was given otherwise.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// The same policy drawing on another budget (`budget = …` in the attribute).
    #[doc(hidden)]
    pub const fn __with_budget(self, budget: Option<&'static RetryBudget>) -> RetryPolicy {
        RetryPolicy {
            budget: match budget {
                Some(budget) => BudgetChoice::Named(budget),
                None => BudgetChoice::Unlimited,
            },
            ..self
        }
    }

    /// The same policy with a circuit breaker (`breaker = …` in the attribute).
    #[doc(hidden)]
    pub const fn __with_breaker(self, breaker: &'static CircuitBreaker) -> RetryPolicy {
        RetryPolicy {
            breaker: BreakerChoice(Some(breaker)),
            ..self
        }
    }

    /// The circuit breaker this policy reports to, if any.
    #[inline(always)]
    pub fn breaker(&self) -> Option<&'static CircuitBreaker> {
        self.breaker.0
    }

    /// Note a call that succeeded with its first attempt, for the policy's circuit breaker: one
    /// load while the breaker is closed, nothing without one.
    #[inline(always)]
    pub fn record_success(&self) {
        if let Some(breaker) = self.breaker() {
            breaker.record_success();
            crate::layers::clear_reported();
        }
    }

    /// May a call start? `Ok` without a breaker or while it lets calls through, else
    /// [`CircuitOpen`](crate::CircuitOpen): what `fail_fast = true` asks before the first
    /// attempt. With [`retry`](crate::retry), ask it first to fail fast the same way.
    ///
    /// Hold the [`Admission`](crate::Admission) until the call returns (with a half-open
    /// breaker it may hold one of its probes), and hand it to the call's
    /// [`Retrier`](crate::Retrier) with [`admitted`](crate::Retrier::admitted).
    #[inline(always)]
    pub fn admit(&self) -> Result<crate::Admission, crate::CircuitOpen> {
        match self.breaker() {
            Some(breaker) => match breaker.admit() {
                Ok(admission) => Ok(admission),
                Err(open) => {
                    self.refused(&open);
                    Err(open)
                }
            },
            None => Ok(crate::Admission::NONE),
        }
    }

    #[cold]
    #[inline(never)]
    fn refused(&self, open: &crate::CircuitOpen) {
        let function = self.name.unwrap_or(crate::metrics::UNNAMED);
        crate::events::breaker_rejected(function, open);
        crate::metrics::breaker_rejected(function, open.breaker());
    }

    /// A call starting under this policy that runs whatever its breaker says: the
    /// [`Admission`](crate::Admission) notes the breaker's state, so the call's failures count
    /// only against the state it started in. Without a breaker, nothing.
    #[inline(always)]
    pub fn enter(&self) -> crate::Admission {
        match self.breaker() {
            Some(breaker) => breaker.enter(),
            None => crate::Admission::NONE,
        }
    }

    /// The retry budget this policy draws on, if any.
    #[inline(always)]
    pub fn budget(&self) -> Option<&'static RetryBudget> {
        self.budget.budget()
    }

    /// Count a call's first attempt against the budget: what the happy path costs for it. A
    /// call made inside another retried call's attempt is part of that call's work, which was
    /// counted once already; counting it again at every outer retry would let retries earn
    /// their own budget.
    ///
    /// With the `metrics` feature, also counts the attempt in `db_retry_attempts_total`.
    #[inline(always)]
    pub fn deposit(&self) {
        self.deposit_as(self.name.unwrap_or(crate::metrics::UNNAMED));
    }

    /// [`RetryPolicy::deposit`], counting the attempt for `function`.
    #[inline(always)]
    pub(crate) fn deposit_as(&self, function: &'static str) {
        if let Some(budget) = self.budget() {
            if !crate::layers::inside_an_attempt() {
                budget.deposit();
            }
        }
        crate::metrics::first_attempt(function);
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// Builds a [`RetryPolicy`]; [`build`](RetryPolicyBuilder::build) checks the combination.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct RetryPolicyBuilder {
    /// The settings as given; their defaults and rules are the attribute's, in `db-retry-policy`.
    settings: Settings,
    seed: Option<u64>,
    budget: BudgetChoice,
    breaker: BreakerChoice,
    name: Option<&'static str>,
}

impl RetryPolicyBuilder {
    /// Retries after the first attempt, `0..=100`. Default 3.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.settings.max_retries = Some(max_retries);
        self
    }
    /// Which classes are retried. Default [`RetryOn::Transient`].
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.settings.retry_on = Some(retry_on);
        self
    }
    /// How delays grow. Default [`Backoff::Exponential`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = Some(backoff);
        self
    }
    /// The first delay. Default 100 ms.
    pub fn base(mut self, base: Duration) -> Self {
        self.settings.base = Some(base);
        self
    }
    /// The ceiling of any single delay. Default 5 s.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.settings.cap = Some(cap);
        self
    }
    /// How delays are randomised. Default [`Jitter::Full`]; with [`Backoff::None`] only
    /// [`Jitter::None`] may be asked for, as there is no delay to randomise.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.settings.jitter = Some(jitter);
        self
    }
    /// No new attempt starts once this much time has passed since the call began. Default none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }
    /// `false`: never retry an error after which the statement may have run. Default `true`.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.settings.idempotent = Some(idempotent);
        self
    }
    /// Draw on `budget` instead of [`RetryBudget::global`].
    pub fn budget(mut self, budget: &'static RetryBudget) -> Self {
        self.budget = BudgetChoice::Named(budget);
        self
    }
    /// Draw on no budget: retries are limited by `max_retries` and `deadline` only.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::Unlimited;
        self
    }
    /// Report failures to `breaker`, and retry only while it is closed. (Failing fast while it
    /// is open is for the caller to ask: [`CircuitBreaker::admit`].)
    pub fn breaker(mut self, breaker: &'static CircuitBreaker) -> Self {
        self.breaker = BreakerChoice(Some(breaker));
        self
    }
    /// The name events and metrics give calls under this policy (the `function` label). Without
    /// it, [`retry`](crate::retry) names a call by its closure's type.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }
    /// Seed the jitter's random number generator, so the delays are reproducible. Meant for
    /// tests; without it every call draws from a fresh, randomly seeded generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Check the combination and return the policy; the same rules as the attribute's.
    pub fn build(self) -> Result<RetryPolicy, PolicyError> {
        let schedule = self.settings.check()?;
        Ok(RetryPolicy {
            max_retries: schedule.max_retries,
            retry_on: schedule.retry_on,
            backoff: schedule.backoff,
            base: schedule.base,
            cap: schedule.cap,
            jitter: schedule.jitter,
            deadline: schedule.deadline,
            idempotent: schedule.idempotent,
            seed: self.seed,
            budget: self.budget,
            breaker: self.breaker,
            name: self.name,
        })
    }
}
