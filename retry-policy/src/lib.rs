//! The error classes and which `on` choice retries which, and the retry policy's defaults,
//! limits and combination rules, shared by the `#[db_retry]`
//! attribute (which checks them at compile time) and the runtime's `RetryPolicy::builder()`
//! (which checks them at run time), so the two cannot disagree. Use it through the `db-retry`
//! crate, which re-exports what users need.
#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

/// The most retries a policy may allow. More than this is a retry storm, not a policy.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// What a policy is when a setting is not given.
pub mod defaults {
    use super::{Backoff, Jitter, RetryOn};
    use std::time::Duration;

    /// Which classes are retried.
    pub const RETRY_ON: RetryOn = RetryOn::Transient;
    /// Whether an error after which the statement may have run is retried.
    pub const IDEMPOTENT: bool = true;
    /// Retries after the first attempt.
    pub const MAX_RETRIES: u32 = 3;
    /// How delays grow.
    pub const BACKOFF: Backoff = Backoff::Exponential;
    /// The first delay.
    pub const BASE: Duration = Duration::from_millis(100);
    /// The ceiling of any single delay.
    pub const CAP: Duration = Duration::from_secs(5);
    /// How delays are randomised.
    pub const JITTER: Jitter = Jitter::Full;
}

/// What kind of failure an error is, and so whether trying again can help.
///
/// ```
/// use db_retry_policy::ErrorClass;
///
/// assert!(!ErrorClass::Connect.may_have_run());
/// assert!(ErrorClass::ConnectionLost.may_have_run());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The client never reached the server, or the server refused the session. Nothing ran.
    Connect,
    /// The connection broke. Outside a transaction, the statement may have run.
    ConnectionLost,
    /// The server rolled the work back because of concurrency (serialization failure, deadlock,
    /// lock timeout, `SQLITE_BUSY`). Nothing took effect.
    Contention,
    /// The server is overloaded, failing, or can no longer take writes (e.g. read-only after a
    /// failover). The statement was rejected.
    Unavailable,
    /// Anything else: constraint violations, syntax errors, `RowNotFound`, decode errors, a
    /// closed pool. Trying again gives the same answer.
    Permanent,
}

impl ErrorClass {
    /// Whether the failed statement may have taken effect on the server.
    ///
    /// Only a lost connection is ambiguous: the server may have executed the statement (or
    /// committed) before the reply was lost. Every other class is reported by the server before
    /// or instead of doing the work.
    pub const fn may_have_run(self) -> bool {
        matches!(self, ErrorClass::ConnectionLost)
    }

    /// Whether the connection that produced this error must be thrown away rather than returned
    /// to the pool.
    ///
    /// sqlx does not mark a connection broken when a query fails; it finds out only at the next
    /// ping. A connection that saw a lost-connection or server-side failure is closed instead, so
    /// the next attempt gets a fresh one.
    pub const fn discards_connection(self) -> bool {
        matches!(self, ErrorClass::ConnectionLost | ErrorClass::Unavailable)
    }

    /// Whether this class is worth another attempt at all (everything but
    /// [`ErrorClass::Permanent`]).
    pub const fn is_transient(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }

    /// A short stable name, as used in tracing events: `connect`, `connection_lost`,
    /// `contention`, `unavailable` or `permanent`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::ConnectionLost => "connection_lost",
            ErrorClass::Contention => "contention",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// The settings of a policy as given: `None` where the default applies. Whether a setting was
/// given matters: `jitter = full` with `backoff = none` asks for something that cannot happen,
/// while the default jitter with `backoff = none` is simply unused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// Which classes are retried.
    pub retry_on: Option<RetryOn>,
    /// Whether an error after which the statement may have run is retried.
    pub idempotent: Option<bool>,
    /// How delays grow.
    pub backoff: Option<Backoff>,
    /// The first delay.
    pub base: Option<Duration>,
    /// The ceiling of any single delay.
    pub cap: Option<Duration>,
    /// How delays are randomised.
    pub jitter: Option<Jitter>,
    /// The time after which no new attempt starts.
    pub deadline: Option<Duration>,
}

/// A policy whose combination holds, with every default filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Retries after the first attempt, at most [`MAX_RETRIES_LIMIT`].
    pub max_retries: u32,
    /// Which classes are retried.
    pub retry_on: RetryOn,
    /// Whether an error after which the statement may have run is retried.
    pub idempotent: bool,
    /// How delays grow.
    pub backoff: Backoff,
    /// The first delay; above zero with exponential backoff.
    pub base: Duration,
    /// The ceiling of any single delay; at least `base`.
    pub cap: Duration,
    /// How delays are randomised.
    pub jitter: Jitter,
    /// The time after which no new attempt starts; above zero.
    pub deadline: Option<Duration>,
}

impl Settings {
    /// Fill in the defaults and check the combination: the one place the rules live.
    pub const fn check(&self) -> Result<Schedule, PolicyError> {
        let max_retries = unwrap_or(self.max_retries, defaults::MAX_RETRIES);
        let backoff = match self.backoff {
            Some(backoff) => backoff,
            None => defaults::BACKOFF,
        };
        let base = match self.base {
            Some(base) => base,
            None => defaults::BASE,
        };
        let cap = match self.cap {
            Some(cap) => cap,
            None => defaults::CAP,
        };
        if max_retries > MAX_RETRIES_LIMIT {
            return Err(PolicyError::TooManyRetries { max_retries });
        }
        if cap.as_nanos() < base.as_nanos() {
            return Err(PolicyError::CapBelowBase { base, cap });
        }
        if base.is_zero() && matches!(backoff, Backoff::Exponential) {
            return Err(PolicyError::ZeroBase);
        }
        let jitter = match self.jitter {
            Some(Jitter::None) => Jitter::None,
            Some(_) if matches!(backoff, Backoff::None) => {
                return Err(PolicyError::JitterWithoutBackoff);
            }
            Some(Jitter::Decorrelated) if !matches!(backoff, Backoff::Exponential) => {
                return Err(PolicyError::DecorrelatedNeedsExponential);
            }
            Some(jitter) => jitter,
            None => defaults::JITTER,
        };
        if let Some(deadline) = self.deadline {
            if deadline.is_zero() {
                return Err(PolicyError::ZeroDeadline);
            }
        }
        Ok(Schedule {
            max_retries,
            retry_on: match self.retry_on {
                Some(retry_on) => retry_on,
                None => defaults::RETRY_ON,
            },
            idempotent: match self.idempotent {
                Some(idempotent) => idempotent,
                None => defaults::IDEMPOTENT,
            },
            backoff,
            base,
            cap,
            jitter,
            deadline: self.deadline,
        })
    }
}

const fn unwrap_or(value: Option<u32>, default: u32) -> u32 {
    match value {
        Some(value) => value,
        None => default,
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
        /// The first delay.
        base: Duration,
        /// The ceiling.
        cap: Duration,
    },
    /// Exponential backoff from a zero base never waits at all.
    ZeroBase,
    /// A jitter other than [`Jitter::None`] was asked for with [`Backoff::None`], which has no
    /// delay to randomise.
    JitterWithoutBackoff,
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
            PolicyError::JitterWithoutBackoff => f.write_str(
                "jitter has nothing to randomise with Backoff::None; leave it out or use Jitter::None",
            ),
            PolicyError::DecorrelatedNeedsExponential => {
                f.write_str("decorrelated jitter requires exponential backoff")
            }
            PolicyError::ZeroDeadline => f.write_str("a deadline must be above zero"),
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass() {
        let schedule = Settings::default().check().expect("defaults are valid");
        assert_eq!(schedule.max_retries, 3);
        assert_eq!(schedule.base, Duration::from_millis(100));
        assert_eq!(schedule.cap, Duration::from_secs(5));
        assert_eq!(schedule.backoff, Backoff::Exponential);
        assert_eq!(schedule.jitter, Jitter::Full);
        assert_eq!(schedule.deadline, None);
        assert_eq!(schedule.retry_on, RetryOn::Transient);
        assert!(schedule.idempotent);
    }

    #[test]
    fn a_jitter_asked_for_needs_a_delay_but_the_default_one_does_not() {
        let none = Settings {
            backoff: Some(Backoff::None),
            ..Settings::default()
        };
        assert!(none.check().is_ok());
        let with = |jitter| Settings {
            jitter: Some(jitter),
            ..none
        };
        assert_eq!(
            with(Jitter::None).check().map(|s| s.jitter),
            Ok(Jitter::None)
        );
        assert_eq!(
            with(Jitter::Full).check(),
            Err(PolicyError::JitterWithoutBackoff)
        );
    }
}
