//! The attribute and the runtime builder accept exactly the same policies, with the same
//! defaults: every combination of given and omitted settings, through both.

use std::time::Duration;

use db_retry_runtime::{Backoff, Jitter, PolicyError, RetryPolicy};
use proc_macro2::Span;

use crate::parse::{Args, Spanned};
use crate::validate;

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        span: Span::call_site(),
    }
}

/// The words the attribute's message uses for the rule the builder reports.
fn attribute_words(error: &PolicyError) -> &'static str {
    match error {
        PolicyError::TooManyRetries { .. } => "is out of range",
        PolicyError::CapBelowBase { .. } => "the cap must be at least|default `base`|default `cap`",
        PolicyError::ZeroBase => "from `base = 0` never waits",
        PolicyError::JitterWithoutBackoff => "has no effect with `backoff = none`",
        PolicyError::DecorrelatedNeedsExponential => "requires `backoff = exponential`",
        PolicyError::ZeroDeadline => "a `deadline` of zero",
        other => panic!("a rule without attribute words: {other:?}"),
    }
}

#[test]
fn every_combination_is_judged_alike() {
    let ms = Duration::from_millis;
    let maxes = [None, Some(0), Some(3), Some(100), Some(101)];
    let backoffs = [
        None,
        Some(Backoff::Exponential),
        Some(Backoff::Fixed),
        Some(Backoff::None),
    ];
    let delays = [
        None,
        Some(ms(0)),
        Some(ms(1)),
        Some(ms(100)),
        Some(ms(5000)),
        Some(ms(60_000)),
    ];
    let jitters = [
        None,
        Some(Jitter::Full),
        Some(Jitter::Equal),
        Some(Jitter::Decorrelated),
        Some(Jitter::None),
    ];
    let deadlines = [None, Some(ms(0)), Some(ms(1000))];

    let (mut accepted, mut rejected) = (0, 0);
    for max in maxes {
        for backoff in backoffs {
            for base in delays {
                for cap in delays {
                    for jitter in jitters {
                        for deadline in deadlines {
                            let args = Args {
                                max: max.map(spanned),
                                backoff: backoff.map(spanned),
                                base: base.map(spanned),
                                cap: cap.map(spanned),
                                jitter: jitter.map(spanned),
                                deadline: deadline.map(spanned),
                                ..Args::default()
                            };
                            let mut builder = RetryPolicy::builder();
                            if let Some(max) = max {
                                builder = builder.max_retries(max);
                            }
                            if let Some(backoff) = backoff {
                                builder = builder.backoff(backoff);
                            }
                            if let Some(base) = base {
                                builder = builder.base(base);
                            }
                            if let Some(cap) = cap {
                                builder = builder.cap(cap);
                            }
                            if let Some(jitter) = jitter {
                                builder = builder.jitter(jitter);
                            }
                            if let Some(deadline) = deadline {
                                builder = builder.deadline(deadline);
                            }
                            let case = format!(
                                "max {max:?}, backoff {backoff:?}, base {base:?}, cap {cap:?}, \
                                 jitter {jitter:?}, deadline {deadline:?}"
                            );
                            match (validate::validate(args), builder.build()) {
                                (Ok(config), Ok(policy)) => {
                                    accepted += 1;
                                    assert_eq!(config.max, policy.max_retries(), "{case}");
                                    assert_eq!(config.backoff, policy.backoff(), "{case}");
                                    assert_eq!(config.base, policy.base(), "{case}");
                                    assert_eq!(config.cap, policy.cap(), "{case}");
                                    assert_eq!(config.jitter, policy.jitter(), "{case}");
                                    assert_eq!(config.deadline, policy.deadline(), "{case}");
                                }
                                (Err(error), Err(policy_error)) => {
                                    rejected += 1;
                                    let message = error.to_string();
                                    let words = attribute_words(&policy_error);
                                    assert!(
                                        words.split('|').any(|w| message.contains(w)),
                                        "{case}: the builder says {policy_error:?}, the attribute says {message:?}"
                                    );
                                }
                                (attribute, builder) => panic!(
                                    "{case}: the attribute says {:?}, the builder says {:?}",
                                    attribute.map(|_| "valid").map_err(|e| e.to_string()),
                                    builder.map(|_| "valid")
                                ),
                            }
                        }
                    }
                }
            }
        }
    }
    // Both outcomes were exercised, many times each.
    assert!(
        accepted > 1000 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn the_defaults_are_the_same() {
    let config = validate::validate(Args::default()).expect("defaults are valid");
    let policy = RetryPolicy::default();
    assert_eq!(config.max, policy.max_retries());
    assert_eq!(config.backoff, policy.backoff());
    assert_eq!(config.base, policy.base());
    assert_eq!(config.cap, policy.cap());
    assert_eq!(config.jitter, policy.jitter());
    assert_eq!(config.deadline, policy.deadline());
    assert_eq!(config.idempotent, policy.idempotent());
}
