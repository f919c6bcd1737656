//! Checks that need more than one key: the combination must describe a schedule that works.
//! The rules and defaults live in `db-retry-policy`, which the runtime's
//! `RetryPolicyBuilder::build` uses too, so the attribute and the builder cannot disagree.

use std::time::Duration;

use proc_macro2::Span;
use syn::{parse_quote, Path};

use db_retry_policy::{defaults, PolicyError, RetryOn, Settings};

use crate::parse::{self, Args, Backoff, BudgetArg, Jitter, RetryOnArg, Spanned};

/// The attribute with every default filled in and every combination checked.
pub(crate) struct Config {
    pub max: u32,
    pub on: RetryOnArg,
    pub backoff: Backoff,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: Jitter,
    pub deadline: Option<Duration>,
    /// `attempt_timeout`: how long one attempt may run before it is cancelled.
    pub attempt_timeout: Option<Duration>,
    /// Where `attempt_timeout` was written, if it was.
    pub attempt_timeout_at: Option<Span>,
    pub idempotent: bool,
    /// `budget = …`; the process-wide budget when `None`.
    pub budget: Option<BudgetArg>,
    /// `breaker = …`: the path of the function's circuit breaker.
    pub breaker: Option<Path>,
    /// Where `fail_fast = true` was written, if it was: the function returns `CircuitOpen`
    /// instead of running while its breaker is open.
    pub fail_fast_at: Option<Span>,
    /// Where `idempotent = false` was written, if it was.
    pub not_idempotent_at: Option<Span>,
    pub crate_path: Path,
}

pub(crate) fn validate(args: Args) -> syn::Result<Config> {
    let settings = Settings {
        max_retries: args.max.as_ref().map(|max| max.value),
        // A classifier of the user's decides by itself; the policy's `on` is the default then.
        retry_on: args.on.as_ref().and_then(|on| match on.value {
            RetryOnArg::Transient => Some(RetryOn::Transient),
            RetryOnArg::Connection => Some(RetryOn::Connection),
            RetryOnArg::Contention => Some(RetryOn::Contention),
            RetryOnArg::Classifier(_) => None,
        }),
        idempotent: args.idempotent.as_ref().map(|idempotent| idempotent.value),
        backoff: args.backoff.as_ref().map(|backoff| backoff.value),
        base: args.base.as_ref().map(|base| base.value),
        cap: args.cap.as_ref().map(|cap| cap.value),
        jitter: args.jitter.as_ref().map(|jitter| jitter.value),
        deadline: args.deadline.as_ref().map(|deadline| deadline.value),
    };
    // The rules are the runtime builder's: both ask `db-retry-policy`. Here each broken rule is
    // reported on the key that broke it, in the attribute's words.
    let schedule = settings.check().map_err(|error| explain(&error, &args))?;
    // Failing fast is what a breaker does when open; without one there is nothing to ask.
    if let Some(fail_fast) = args.fail_fast.as_ref().filter(|fail_fast| fail_fast.value) {
        if args.breaker.is_none() {
            return Err(syn::Error::new(
                fail_fast.span,
                "`fail_fast = true` fails calls while a circuit breaker is open, and this function has none; add `breaker = path::to::BREAKER`",
            ));
        }
    }
    // A bound of the generated code alone (the function form leaves timeouts to the caller's
    // `tokio::time::timeout`), so checked here.
    if let Some(timeout) = args.attempt_timeout.as_ref().filter(|t| t.value.is_zero()) {
        return Err(syn::Error::new(
            timeout.span,
            "an `attempt_timeout` of zero cancels every attempt before it starts; remove it or make it longer",
        ));
    }
    Ok(Config {
        max: schedule.max_retries,
        on: match args.on {
            Some(on) => on.value,
            None => match schedule.retry_on {
                RetryOn::Connection => RetryOnArg::Connection,
                RetryOn::Contention => RetryOnArg::Contention,
                _ => RetryOnArg::Transient,
            },
        },
        backoff: schedule.backoff,
        base: schedule.base,
        cap: schedule.cap,
        jitter: schedule.jitter,
        deadline: schedule.deadline,
        attempt_timeout: args.attempt_timeout.as_ref().map(|timeout| timeout.value),
        attempt_timeout_at: args.attempt_timeout.as_ref().map(|timeout| timeout.span),
        idempotent: schedule.idempotent,
        budget: args.budget.map(|budget| budget.value),
        breaker: args.breaker.map(|breaker| breaker.value),
        fail_fast_at: args
            .fail_fast
            .as_ref()
            .filter(|fail_fast| fail_fast.value)
            .map(|fail_fast| fail_fast.span),
        not_idempotent_at: args
            .idempotent
            .as_ref()
            .filter(|idempotent| !idempotent.value)
            .map(|idempotent| idempotent.span),
        crate_path: args.crate_path.unwrap_or_else(|| {
            let mut path: Path = parse_quote!(::db_retry);
            path.segments[0].ident.set_span(Span::call_site());
            path
        }),
    })
}

/// Where a key was written; the rules only fail on keys that were given.
fn at<T>(key: &Option<Spanned<T>>) -> Span {
    key.as_ref().map_or_else(Span::call_site, |key| key.span)
}

/// The compile error for a broken rule, on the key that broke it.
fn explain(error: &PolicyError, args: &Args) -> syn::Error {
    let (span, message) = match error {
        PolicyError::TooManyRetries { max_retries } => (
            at(&args.max),
            format!("`max = {max_retries}` is out of range; {}", parse::max_wanted()),
        ),
        PolicyError::CapBelowBase { base, cap } => match (&args.cap, &args.base) {
            (Some(given), Some(_)) => (
                given.span,
                format!("`cap` ({}) is below `base` ({}); the cap must be at least the first delay", format_duration(*cap), format_duration(*base)),
            ),
            (Some(given), None) => (
                given.span,
                format!("`cap` ({}) is below the default `base` ({}); raise `cap` or set a smaller `base`", format_duration(*cap), format_duration(defaults::BASE)),
            ),
            (None, given) => (
                at(given),
                format!("`base` ({}) is above the default `cap` ({}); set `cap` to at least `base`", format_duration(*base), format_duration(defaults::CAP)),
            ),
        },
        PolicyError::ZeroBase => (
            at(&args.base),
            "exponential backoff from `base = 0` never waits; use `backoff = none` to retry at once".to_owned(),
        ),
        PolicyError::JitterWithoutBackoff => (
            at(&args.jitter),
            "`jitter` has no effect with `backoff = none`; remove it or write `jitter = none`".to_owned(),
        ),
        PolicyError::DecorrelatedNeedsExponential => (
            at(&args.jitter),
            "`jitter = decorrelated` grows on its own and requires `backoff = exponential`".to_owned(),
        ),
        PolicyError::ZeroDeadline => (
            at(&args.deadline),
            "a `deadline` of zero forbids every retry; remove it or make it longer".to_owned(),
        ),
        other => (Span::call_site(), other.to_string()),
    };
    syn::Error::new(span, message)
}

/// What to rewrite the function with when the attribute has an error (so callers still see the
/// signature they expect): the default schedule, but the `on` and `crate` that did parse, as they
/// decide whether the rewritten function type-checks. `idempotent` is left out: its own check
/// would only add a second error to the first.
pub(crate) fn fallback(args: Args) -> Config {
    let args = Args {
        on: args.on,
        crate_path: args.crate_path,
        ..Args::default()
    };
    match validate(args) {
        Ok(config) => config,
        Err(_) => unreachable!("the default schedule passes validation"),
    }
}

/// A duration as the user would write it.
fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
