//! The retry driver: decides after each failed attempt whether and when to try again.
//!
//! The attribute and [`retry`] share it. The loop itself lives with the caller (in the rewritten
//! function, or in [`retry`]) so that the error is judged and dropped *before* the backoff
//! `.await`: a future that held the error across the sleep would not be `Send` whenever the error
//! isn't.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Schedule;
use crate::breaker::{BreakerState, Tripped};
use crate::budget::Withdrawal;
use crate::classify::{Classify, ErrorClass};
use crate::events;
use crate::layers::{self, Enclosing};
use crate::metrics;
use crate::policy::RetryPolicy;

/// The judgement of one failed attempt, as the classifier made it.
///
/// Built-in classification gives a [`ErrorClass`]; a user classifier may answer with a class or
/// with a plain `bool` (true = retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The error's class; the policy decides whether it is retried.
    Class(ErrorClass),
    /// A user classifier's yes or no; the policy's `on` doesn't apply, and it cannot overrule
    /// `idempotent = false` once the attempt may have applied something.
    Retry(bool),
}

impl From<ErrorClass> for Verdict {
    fn from(class: ErrorClass) -> Self {
        Verdict::Class(class)
    }
}

impl From<bool> for Verdict {
    fn from(retry: bool) -> Self {
        Verdict::Retry(retry)
    }
}

/// Where in a unit of work the error happened; it decides whether the statement may have run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// Getting the attempt's connection: nothing has been sent yet, so nothing ran, and a
    /// connection lost here counts as [`ErrorClass::Connect`].
    Acquire,
    /// The body has its connection outside a transaction: a lost connection leaves the failing
    /// statement ambiguous, and earlier statements of the attempt may have taken effect, so a
    /// policy with `idempotent(false)` retries nothing here.
    #[default]
    Statement,
    /// Inside an open transaction, before COMMIT was sent: the server rolls it back when the
    /// connection dies, so nothing took effect.
    Transaction,
    /// During COMMIT: only a rollback the server reports (contention) is certain; any other
    /// failure leaves the outcome unknown.
    Commit,
}

/// The state of one call across its attempts.
///
/// ```
/// use db_retry_runtime::layers::{as_attempt, Enclosing};
/// use db_retry_runtime::{Classify, Retrier, RetryPolicy};
///
/// # async fn query() -> Result<u32, sqlx::Error> { Ok(1) }
/// # async fn run() -> Result<u32, sqlx::Error> {
/// let policy = RetryPolicy::default();
/// // The call's standing with its circuit breaker, if the policy has one: held to the end.
/// let admission = policy.enter();
/// let mut retrier = Retrier::new(&policy, "query").admitted(&admission);
/// // The call's first attempt counts against the retry budget its retries draw on.
/// policy.deposit();
/// loop {
///     // As an attempt, so retried calls inside it leave their retrying to this loop.
///     let delay = match as_attempt(query(), Enclosing::of(&policy)).await {
///         Ok(value) => {
///             retrier.succeeded();
///             return Ok(value);
///         }
///         Err(error) => match retrier.retry_after(&error, error.classify()) {
///             Some(delay) => delay,
///             None => return Err(error),
///         },
///     };
///     db_retry_runtime::sleep(delay).await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Retrier<'p> {
    policy: &'p RetryPolicy,
    function: &'static str,
    retries: u32,
    /// Read only when the policy has a deadline, so the happy path reads no clock otherwise.
    started: Option<Instant>,
    schedule: Schedule,
    /// The last delay was cut short to fit the deadline: the attempt after it is the last.
    cut_to_deadline: bool,
    /// The breaker's generation when the call started, if it has a breaker and said so.
    breaker_generation: Option<u32>,
}

impl<'p> Retrier<'p> {
    /// Start a call named `function` (the name appears in tracing events).
    #[inline]
    pub fn new(policy: &'p RetryPolicy, function: &'static str) -> Self {
        Retrier {
            policy,
            function,
            retries: 0,
            started: policy.deadline.map(|_| Instant::now()),
            schedule: Schedule::new(),
            cut_to_deadline: false,
            breaker_generation: None,
        }
    }

    /// Start judging a call that began at `started`, before its first attempt: the deadline
    /// counts from there. Lets a caller create the retrier only once an attempt has failed.
    #[inline]
    pub fn started_at(policy: &'p RetryPolicy, function: &'static str, started: Instant) -> Self {
        Retrier {
            policy,
            function,
            retries: 0,
            started: Some(started),
            schedule: Schedule::new(),
            cut_to_deadline: false,
            breaker_generation: None,
        }
    }

    /// The call started with `admission` ([`RetryPolicy::enter`], [`RetryPolicy::admit`]): its
    /// failures count against its breaker only while the breaker is in the state the call
    /// started in. Without it, every failure counts.
    pub fn admitted(mut self, admission: &crate::Admission) -> Self {
        self.breaker_generation = admission.generation();
        self
    }

    /// Retries made so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// How long cleaning up a failed attempt's connection may take before a backoff of `delay`,
    /// so that the next attempt still starts before the deadline:
    /// [`RESET_TIMEOUT`](crate::RESET_TIMEOUT), or less when the deadline is near.
    pub fn settle_limit(&self, delay: Duration) -> Duration {
        match (self.policy.deadline, self.started) {
            (Some(deadline), Some(started)) => crate::connection::RESET_TIMEOUT.min(
                deadline
                    .saturating_sub(started.elapsed())
                    .saturating_sub(delay),
            ),
            _ => crate::connection::RESET_TIMEOUT,
        }
    }

    /// How long the next attempt may run under `attempt_timeout`: the timeout, or the time left
    /// before the deadline when that is shorter.
    pub fn attempt_limit(&self, attempt_timeout: Duration) -> Duration {
        match (self.policy.deadline, self.started) {
            (Some(deadline), Some(started)) => {
                attempt_timeout.min(deadline.saturating_sub(started.elapsed()))
            }
            _ => attempt_timeout,
        }
    }

    /// Record a success after a failed attempt: tells the policy's circuit breaker, and emits a
    /// DEBUG event if it took retries.
    #[inline]
    pub fn succeeded(&self) {
        self.policy.record_success();
        if self.retries > 0 {
            events::succeeded_after_retries(self.function, self.retries + 1);
        }
    }

    /// Judge a failed attempt outside a transaction. Returns the delay before the next attempt,
    /// or `None` when the error must go to the caller.
    #[cold]
    pub fn retry_after<E: Display + ?Sized>(
        &mut self,
        error: &E,
        verdict: impl Into<Verdict>,
    ) -> Option<Duration> {
        self.retry_after_in_phase(error, verdict.into(), Phase::Statement)
    }

    /// The former name of [`Retrier::retry_after_in_phase`].
    #[deprecated(since = "0.2.0", note = "renamed to `retry_after_in_phase`")]
    pub fn retry_after_in<E: Display + ?Sized>(
        &mut self,
        error: &E,
        verdict: Verdict,
        phase: Phase,
    ) -> Option<Duration> {
        self.retry_after_in_phase(error, verdict, phase)
    }

    /// Judge a failed attempt that happened in `phase` of a unit of work.
    #[cold]
    pub fn retry_after_in_phase<E: Display + ?Sized>(
        &mut self,
        error: &E,
        verdict: Verdict,
        phase: Phase,
    ) -> Option<Duration> {
        self.decide(&Shown(error), None, verdict, phase)
    }

    /// [`Retrier::retry_after_in_phase`], told which error in `error`'s chain decided its class
    /// ([`Classify::decided_by`]): the events name it next to `error`, so a wrapper whose
    /// message hides its cause does not hide it from the logs. What `#[db_retry]` calls.
    #[cold]
    pub fn retry_after_classified(
        &mut self,
        error: &dyn Display,
        decided_by: Option<&(dyn std::error::Error + 'static)>,
        verdict: Verdict,
        phase: Phase,
    ) -> Option<Duration> {
        self.decide(error, decided_by, verdict, phase)
    }

    fn decide(
        &mut self,
        error: &dyn Display,
        decided_by: Option<&(dyn std::error::Error + 'static)>,
        verdict: Verdict,
        phase: Phase,
    ) -> Option<Duration> {
        let failure = events::Failure::new(self.function, error, decided_by);
        // `idempotent = false` judges the attempt, not the failed statement: once the body has
        // its connection outside a transaction (a pool function, or `#[acquire]` after the
        // acquire), earlier statements of the attempt may have taken effect, whatever this
        // error says about the last one. Inside a transaction the server rolled everything
        // back; while getting the connection nothing was sent; during COMMIT only a lost
        // connection leaves the outcome unknown.
        let (class, may_have_run, wanted) = match verdict {
            Verdict::Class(class) => {
                // While getting the connection nothing of the call was sent, so a connection
                // that broke then (a reset during the handshake, a route gone) failed to connect.
                let class = match (phase, class) {
                    (Phase::Acquire, ErrorClass::ConnectionLost) => ErrorClass::Connect,
                    _ => class,
                };
                let may_have_run =
                    class.may_have_run() && matches!(phase, Phase::Statement | Phase::Commit);
                let attempt_may_have_applied = match phase {
                    Phase::Acquire | Phase::Transaction => false,
                    Phase::Statement => true,
                    // Only a rollback the server reported is certain; any failure of the
                    // connection itself may have followed the commit.
                    Phase::Commit => class != ErrorClass::Contention,
                };
                if class == ErrorClass::Permanent {
                    if let Some(hint) = decided_by.and_then(crate::hint::configuration_hint) {
                        failure.misconfigured(self.retries + 1, hint);
                    }
                }
                // A write refused as read-only may mean a pool's server is now a standby: the
                // pools' failover drains look (see `FailoverDrain`).
                #[cfg(all(feature = "sqlx09", feature = "postgres"))]
                if class == ErrorClass::Unavailable
                    && decided_by
                        .and_then(crate::sqlx09::postgres_report)
                        .is_some_and(|(code, _)| code == "25006")
                {
                    crate::drain::read_only_refusal_seen();
                }
                let covered = self.policy.retry_on.covers(class);
                let wanted = covered && (self.policy.idempotent || !attempt_may_have_applied);
                if class.is_transient() && covered && !wanted {
                    failure.gave_up(
                        self.retries + 1,
                        Some(class),
                        "the attempt may have taken effect and the function is not idempotent",
                        None,
                    );
                    metrics::gave_up(self.function, Some(class), "not_idempotent");
                }
                (Some(class), may_have_run, wanted)
            }
            // A user classifier decides whether the error is worth retrying, but it cannot
            // overrule `idempotent = false`: it does not know what the attempt had applied.
            Verdict::Retry(retry) => (
                None,
                phase == Phase::Commit,
                retry
                    && (self.policy.idempotent
                        || matches!(phase, Phase::Acquire | Phase::Transaction)),
            ),
        };
        // Every failed attempt reports to the breaker, which judges the database, not the call,
        // at once and once: a call that takes an error a call inside it on the same breaker
        // already reported (handed up, or returned after its own retries) does not report it
        // again.
        let breaker = self.policy.breaker();
        let reported_inside = layers::take_reported();
        let tag = breaker.map_or(0, layers::breaker_tag);
        let tripped = match breaker {
            Some(breaker) => match class {
                Some(class) if reported_inside != tag => {
                    breaker.failed(class, self.breaker_generation)
                }
                _ if breaker.allows_retries() => Tripped::No,
                _ => match breaker.state() {
                    BreakerState::Closed => Tripped::No,
                    state => Tripped::Refusing(state),
                },
            },
            None => Tripped::No,
        };
        // The error leaves this call: an enclosing call on the same breaker is told it counted
        // (and one on the breaker a call inside this one reported to, through this call).
        let leave = || {
            match (breaker, class) {
                (Some(_), Some(_)) => layers::mark_reported(tag),
                _ => layers::mark_reported(reported_inside),
            }
            None
        };
        if !wanted {
            return leave();
        }
        // One retrying layer: inside another retried call's attempt whose policy retries this
        // error, that call retries.
        if layers::enclosing_call_retries(class) {
            failure.handed_up(self.retries + 1, class);
            return leave();
        }
        if self.retries >= self.policy.max_retries {
            if self.policy.max_retries > 0 {
                let bound =
                    failure.gave_up(self.retries + 1, class, "no retries left", Some("max"));
                metrics::gave_up(self.function, class, bound.unwrap_or("max"));
            }
            return leave();
        }
        let mut delay = self.schedule.next_delay(self.policy, self.retries);
        if let (Some(deadline), Some(started)) = (self.policy.deadline, self.started) {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() || self.cut_to_deadline {
                failure.gave_up(
                    self.retries + 1,
                    class,
                    "the deadline leaves no time for another attempt",
                    Some("deadline"),
                );
                metrics::gave_up(self.function, class, "deadline");
                return leave();
            }
            // A delay that would reach the deadline (an unlucky jitter draw, a long backoff) is
            // cut to half the time left, so one last attempt still starts with time to run.
            if delay >= left {
                delay = left / 2;
                self.cut_to_deadline = true;
            }
        }
        if let (Some(breaker), Tripped::Refusing(state)) = (breaker, tripped) {
            failure.breaker_refused(self.retries + 1, class, breaker.name(), state);
            metrics::gave_up(self.function, class, "breaker");
            return leave();
        }
        // Last: the budget counts only retries that would otherwise happen.
        if let Some(budget) = self.policy.budget() {
            if let Withdrawal::Refused { report } = budget.withdraw(Instant::now()) {
                if let Some(unreported) = report {
                    failure.budget_spent(self.retries + 1, class, unreported);
                }
                metrics::gave_up(self.function, class, "budget");
                return leave();
            }
        }
        self.retries += 1;
        if let Some(breaker) = breaker {
            // The retry starts now, in the breaker's current state: its failure counts there.
            self.breaker_generation = Some(breaker.generation());
            breaker.count_attempt();
        }
        failure.retrying(self.retries, delay, class, may_have_run);
        metrics::retry(self.function, class, delay);
        Some(delay)
    }
}

/// `E: Display + ?Sized` as a `dyn Display`.
struct Shown<'e, E: ?Sized>(&'e E);

impl<E: Display + ?Sized> Display for Shown<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Wait before the next attempt, on tokio's clock (so paused-clock tests see exact delays). A
/// [`Heartbeat`](crate::Heartbeat) that sees the database accept again after an outage ends
/// the wait early, so recovery does not wait for the longest delay drawn.
pub async fn sleep(delay: Duration) {
    if delay.is_zero() {
        return;
    }
    let until = Instant::now() + delay;
    if tokio::time::timeout(delay, recovered().notified())
        .await
        .is_ok()
    {
        // Woken with every other sleeping retry: spread them over up to 50 ms (never past the
        // delay drawn), so they do not reach the recovering database in the same instant.
        let left = until.saturating_duration_since(Instant::now());
        let spread = left.min(WAKE_SPREAD);
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_nanos(fastrand::u64(0..=nanos))).await;
    }
}

/// How far apart a heartbeat's wake-up spreads the retries it wakes.
const WAKE_SPREAD: Duration = Duration::from_millis(50);

/// Woken when a heartbeat sees the database accept again.
pub(crate) fn recovered() -> &'static tokio::sync::Notify {
    static RECOVERED: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    RECOVERED.get_or_init(tokio::sync::Notify::new)
}

/// Run `operation` until it succeeds, fails with an error the policy does not retry, or runs out
/// of retries; the function form of `#[db_retry]`.
///
/// Each attempt calls `operation` again, so the closure should acquire what it needs (take the
/// pool, not a connection). It cannot see what an attempt has applied, so under a policy with
/// `idempotent(false)` it retries nothing; a `Retrier` driven by hand can say where an attempt
/// stands with [`Retrier::retry_after_in_phase`].
///
/// ```no_run
/// use db_retry_runtime::{retry, RetryPolicy};
/// use sqlx::PgPool;
///
/// async fn count_users(pool: &PgPool) -> Result<i64, sqlx::Error> {
///     let policy = RetryPolicy::builder().max_retries(5).build().expect("valid policy");
///     retry(&policy, || async {
///         sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
///     })
///     .await
/// }
/// ```
///
/// The error type must implement [`Classify`] (every `std::error::Error + 'static` does). For
/// `anyhow::Error`, `Box<dyn Error>` or a classifier of your own, use [`retry_with`].
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, operation: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + Display,
{
    retry_judged(
        policy,
        |retrier, error: &E| {
            let verdict = Verdict::Class(error.classify());
            retrier.retry_after_classified(error, error.decided_by(), verdict, Phase::Statement)
        },
        operation,
    )
    .await
}

/// [`retry`] with an explicit classifier: `classify` returns an [`ErrorClass`] (the policy
/// decides) or a `bool` (true = retry).
///
/// ```
/// use db_retry_runtime::{retry_with, Classify, RetryPolicy};
///
/// # async fn run() -> anyhow::Result<()> {
/// let policy = RetryPolicy::default();
/// retry_with(&policy, |error: &anyhow::Error| error.classify(), || async {
///     anyhow::Ok(())
/// })
/// .await
/// # }
/// ```
pub async fn retry_with<T, E, V, C, F, Fut>(
    policy: &RetryPolicy,
    mut classify: C,
    operation: F,
) -> Result<T, E>
where
    C: FnMut(&E) -> V,
    V: Into<Verdict>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    retry_judged(
        policy,
        |retrier, error: &E| retrier.retry_after(error, classify(error)),
        operation,
    )
    .await
}

/// The loop of [`retry`] and [`retry_with`]; `judge` decides on each failed attempt.
async fn retry_judged<T, E, J, F, Fut>(
    policy: &RetryPolicy,
    mut judge: J,
    mut operation: F,
) -> Result<T, E>
where
    J: FnMut(&mut Retrier<'_>, &E) -> Option<Duration>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = policy.deadline.map(|_| Instant::now());
    let function = policy.name().unwrap_or_else(std::any::type_name::<F>);
    let admission = policy.enter();
    policy.deposit_as(function);
    let error = match layers::as_attempt(operation(), Enclosing::of(policy)).await {
        Ok(value) => {
            policy.record_success();
            return Ok(value);
        }
        Err(error) => error,
    };
    let mut retrier = match started {
        Some(started) => Retrier::started_at(policy, function, started),
        None => Retrier::new(policy, function),
    }
    .admitted(&admission);
    let Some(mut delay) = judge(&mut retrier, &error) else {
        return Err(error);
    };
    drop(error);
    // As in the attribute's expansion: only a failed first attempt pays for the loop.
    Box::pin(async move {
        loop {
            sleep(delay).await;
            delay = match layers::as_attempt(operation(), Enclosing::of(policy)).await {
                Ok(value) => {
                    retrier.succeeded();
                    return Ok(value);
                }
                Err(error) => match judge(&mut retrier, &error) {
                    Some(delay) => delay,
                    None => return Err(error),
                },
            };
        }
    })
    .await
}
