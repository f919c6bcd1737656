//! What to retry and how long to wait: [`RetryPolicy`] and its builder.

use std::fmt;
use std::time::Duration;

use crate::classify::ErrorClass;

/// The most retries a policy may allow. More than this is a retry storm, not a policy.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// Which error classes are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RetryOn {
    /// Every class but [`ErrorClass::Permanent`] (the default).
    #[default]
    Transient,
    /// Connection-level failures only: [`ErrorClass::Connect`], [`ErrorClass::ConnectionLost`]
    /// and [`ErrorClass::Unavailable`].
    Connection,
    /// Concurrency failures only: [`ErrorClass::Contention`].
    Contention,
}

impl RetryOn {
    /// Whether this choice retries errors of `class`.
    pub const fn covers(self, class: ErrorClass) -> bool {
        match self {
            RetryOn::Transient => class.is_transient(),
            RetryOn::Connection => matches!(
                class,
                ErrorClass::Connect | ErrorClass::ConnectionLost | ErrorClass::Unavailable
            ),
            RetryOn::Contention => matches!(class, ErrorClass::Contention),
        }
    }
}

/// How the delay grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backoff {
    /// `base`, `2·base`, `4·base`, … up to `cap` (the default).
    #[default]
    Exponential,
    /// `base` every time.
    Fixed,
    /// No delay at all: retry at once.
    None,
}

/// How randomness spreads the delays of many clients that failed at the same moment, as in the
/// AWS Architecture Blog's "Exponential Backoff And Jitter".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// A uniform draw in `[0, d]` where `d` is the un-jittered delay (the default).
    #[default]
    Full,
    /// `d/2` plus a uniform draw in `[0, d/2]`.
    Equal,
    /// A uniform draw in `[base, 3·previous]`, capped; grows on its own, so it requires
    /// [`Backoff::Exponential`].
    Decorrelated,
    /// Exactly `d`.
    None,
}

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
}

impl RetryPolicy {
    /// The defaults of the attribute (see the type's docs).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_retries: 3,
        retry_on: RetryOn::Transient,
        backoff: Backoff::Exponential,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        jitter: Jitter::Full,
        deadline: None,
        idempotent: true,
        seed: None,
    };

    /// Start building a policy from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::DEFAULT,
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

    /// Whether an error of `class` is retried under this policy (ignoring the attempt count and
    /// deadline).
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
        }
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
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Retries after the first attempt, `0..=100`. Default 3.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.policy.max_retries = max_retries;
        self
    }
    /// Which classes are retried. Default [`RetryOn::Transient`].
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.policy.retry_on = retry_on;
        self
    }
    /// How delays grow. Default [`Backoff::Exponential`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }
    /// The first delay. Default 100 ms.
    pub fn base(mut self, base: Duration) -> Self {
        self.policy.base = base;
        self
    }
    /// The ceiling of any single delay. Default 5 s.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.policy.cap = cap;
        self
    }
    /// How delays are randomised. Default [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.jitter = jitter;
        self
    }
    /// No new attempt starts once this much time has passed since the call began. Default none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policy.deadline = Some(deadline);
        self
    }
    /// `false`: never retry an error after which the statement may have run. Default `true`.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.policy.idempotent = idempotent;
        self
    }
    /// Seed the jitter's random number generator, so the delays are reproducible. Meant for
    /// tests; without it every call draws from a fresh, randomly seeded generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.seed = Some(seed);
        self
    }

    /// Check the combination and return the policy.
    pub fn build(self) -> Result<RetryPolicy, PolicyError> {
        let p = self.policy;
        if p.max_retries > MAX_RETRIES_LIMIT {
            return Err(PolicyError::TooManyRetries {
                max_retries: p.max_retries,
            });
        }
        if p.cap < p.base {
            return Err(PolicyError::CapBelowBase {
                base: p.base,
                cap: p.cap,
            });
        }
        if p.base.is_zero() && p.backoff == Backoff::Exponential {
            return Err(PolicyError::ZeroBase);
        }
        if p.jitter == Jitter::Decorrelated && p.backoff != Backoff::Exponential {
            return Err(PolicyError::DecorrelatedNeedsExponential);
        }
        if p.deadline.is_some_and(|d| d.is_zero()) {
            return Err(PolicyError::ZeroDeadline);
        }
        Ok(p)
    }
}

/// A retry policy that cannot work as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// `max_retries` is above [`MAX_RETRIES_LIMIT`].
    TooManyRetries {
        /// The value given.
        max_retries: u32,
    },
    /// `cap` is smaller than `base`.
    CapBelowBase {
        /// The first delay given.
        base: Duration,
        /// The ceiling given.
        cap: Duration,
    },
    /// Exponential backoff from a zero base never waits at all.
    ZeroBase,
    /// Decorrelated jitter grows on its own and only makes sense with exponential backoff.
    DecorrelatedNeedsExponential,
    /// A zero deadline would forbid every retry.
    ZeroDeadline,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::TooManyRetries { max_retries } => write!(
                f,
                "max_retries is {max_retries}, but at most {MAX_RETRIES_LIMIT} retries are allowed"
            ),
            PolicyError::CapBelowBase { base, cap } => write!(
                f,
                "cap ({cap:?}) is below base ({base:?}); the cap must be at least the first delay"
            ),
            PolicyError::ZeroBase => f.write_str(
                "exponential backoff needs a base above zero; use Backoff::None to retry at once",
            ),
            PolicyError::DecorrelatedNeedsExponential => {
                f.write_str("decorrelated jitter requires exponential backoff")
            }
            PolicyError::ZeroDeadline => f.write_str("a deadline must be above zero"),
        }
    }
}

impl std::error::Error for PolicyError {}
