//! Checks that need more than one key: the combination must describe a schedule that works.
//! The runtime's `RetryPolicyBuilder::build` makes the same checks for policies built by hand.

use std::time::Duration;

use proc_macro2::Span;
use syn::{parse_quote, Path};

use crate::parse::{Args, BackoffKind, JitterKind, On, Spanned};

/// The attribute with every default filled in and every combination checked.
pub(crate) struct Config {
    pub max: u32,
    pub on: On,
    pub backoff: BackoffKind,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: JitterKind,
    pub deadline: Option<Duration>,
    pub idempotent: bool,
    pub krate: Path,
}

const DEFAULT_BASE: Duration = Duration::from_millis(100);
const DEFAULT_CAP: Duration = Duration::from_secs(5);

pub(crate) fn validate(args: Args) -> syn::Result<Config> {
    let backoff = args
        .backoff
        .as_ref()
        .map_or(BackoffKind::Exponential, |b| b.value);
    let base = args.base.as_ref().map_or(DEFAULT_BASE, |b| b.value);
    let cap = args.cap.as_ref().map_or(DEFAULT_CAP, |c| c.value);

    if cap < base {
        let (span, message) = match (&args.cap, &args.base) {
            (Some(cap), Some(_)) => (
                cap.span,
                format!("`cap` ({}) is below `base` ({}); the cap must be at least the first delay", show(cap.value), show(base)),
            ),
            (Some(cap), None) => (
                cap.span,
                format!("`cap` ({}) is below the default `base` (100ms); raise `cap` or set a smaller `base`", show(cap.value)),
            ),
            (None, Some(base)) => (
                base.span,
                format!("`base` ({}) is above the default `cap` (5s); set `cap` to at least `base`", show(base.value)),
            ),
            (None, None) => unreachable!("the defaults satisfy cap >= base"),
        };
        return Err(syn::Error::new(span, message));
    }
    if let Some(Spanned { value, span }) = &args.base {
        if value.is_zero() && backoff == BackoffKind::Exponential {
            return Err(syn::Error::new(
                *span,
                "exponential backoff from `base = 0` never waits; use `backoff = none` to retry at once",
            ));
        }
    }
    if let Some(jitter) = &args.jitter {
        // `jitter = none` says the same as `backoff = none` and is allowed with it.
        if backoff == BackoffKind::None && jitter.value != JitterKind::None {
            return Err(syn::Error::new(
                jitter.span,
                "`jitter` has no effect with `backoff = none`; remove it or write `jitter = none`",
            ));
        }
        if jitter.value == JitterKind::Decorrelated && backoff != BackoffKind::Exponential {
            return Err(syn::Error::new(
                jitter.span,
                "`jitter = decorrelated` grows on its own and requires `backoff = exponential`",
            ));
        }
    }
    if let Some(Spanned { value, span }) = &args.deadline {
        if value.is_zero() {
            return Err(syn::Error::new(
                *span,
                "a `deadline` of zero forbids every retry; remove it or make it longer",
            ));
        }
    }

    Ok(Config {
        max: args.max.map_or(3, |m| m.value),
        on: args.on.map_or(On::Transient, |on| on.value),
        backoff,
        base,
        cap,
        jitter: args.jitter.map_or(JitterKind::Full, |j| j.value),
        deadline: args.deadline.map(|d| d.value),
        idempotent: args.idempotent.is_none_or(|i| i.value),
        krate: args.krate.unwrap_or_else(|| {
            let mut path: Path = parse_quote!(::db_retry);
            path.segments[0].ident.set_span(Span::call_site());
            path
        }),
    })
}

/// What to rewrite the function with when the attribute has an error (so callers still see the
/// signature they expect): the default schedule, but the `on` and `crate` that did parse, as they
/// decide whether the rewritten function type-checks.
pub(crate) fn fallback(args: Args) -> Config {
    let args = Args {
        on: args.on,
        krate: args.krate,
        ..Args::default()
    };
    match validate(args) {
        Ok(config) => config,
        Err(_) => unreachable!("the default schedule passes validation"),
    }
}

/// A duration as the user would write it.
fn show(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
