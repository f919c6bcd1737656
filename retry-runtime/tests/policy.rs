//! `RetryPolicyBuilder::build` rejects unworkable policies with a typed error, and accepts the
//! edge cases that do work.

use std::time::Duration;

use db_retry_runtime::{Backoff, Jitter, PolicyError, RetryOn, RetryPolicy, MAX_RETRIES_LIMIT};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn more_than_one_hundred_retries_is_too_many() {
    assert_eq!(MAX_RETRIES_LIMIT, 100);
    let error = RetryPolicy::builder().max_retries(101).build().unwrap_err();
    assert_eq!(error, PolicyError::TooManyRetries { max_retries: 101 });
    let error = RetryPolicy::builder()
        .max_retries(u32::MAX)
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        PolicyError::TooManyRetries {
            max_retries: u32::MAX
        }
    );
}

#[test]
fn cap_below_base_is_rejected_with_both_values() {
    let error = RetryPolicy::builder()
        .base(ms(500))
        .cap(ms(499))
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        PolicyError::CapBelowBase {
            base: ms(500),
            cap: ms(499)
        }
    );
}

#[test]
fn exponential_backoff_from_zero_base_is_rejected() {
    let error = RetryPolicy::builder()
        .backoff(Backoff::Exponential)
        .base(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error, PolicyError::ZeroBase);
}

#[test]
fn decorrelated_jitter_without_exponential_backoff_is_rejected() {
    let error = RetryPolicy::builder()
        .backoff(Backoff::Fixed)
        .jitter(Jitter::Decorrelated)
        .build()
        .unwrap_err();
    assert_eq!(error, PolicyError::DecorrelatedNeedsExponential);
}

#[test]
fn a_jitter_asked_for_with_no_backoff_is_rejected_as_the_attribute_rejects_it() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let error = RetryPolicy::builder()
            .backoff(Backoff::None)
            .jitter(jitter)
            .build()
            .unwrap_err();
        assert_eq!(error, PolicyError::JitterWithoutBackoff, "{jitter:?}");
    }
    // Saying there is none, or not saying anything, is fine.
    let explicit = RetryPolicy::builder()
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .build()
        .expect("jitter none with backoff none");
    assert_eq!(explicit.jitter(), Jitter::None);
    RetryPolicy::builder()
        .backoff(Backoff::None)
        .build()
        .expect("the default jitter with backoff none");
}

#[test]
fn zero_deadline_is_rejected() {
    let error = RetryPolicy::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error, PolicyError::ZeroDeadline);
}

#[test]
fn one_hundred_retries_is_allowed() {
    let policy = RetryPolicy::builder().max_retries(100).build().unwrap();
    assert_eq!(policy.max_retries(), 100);
}

#[test]
fn cap_equal_to_base_is_allowed() {
    let policy = RetryPolicy::builder()
        .base(ms(300))
        .cap(ms(300))
        .build()
        .unwrap();
    assert_eq!((policy.base(), policy.cap()), (ms(300), ms(300)));
}

#[test]
fn zero_base_is_allowed_without_exponential_backoff() {
    for backoff in [Backoff::None, Backoff::Fixed] {
        let policy = RetryPolicy::builder()
            .backoff(backoff)
            .base(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(policy.base(), Duration::ZERO, "{backoff:?}");
    }
}

#[test]
fn tiny_deadline_and_decorrelated_exponential_are_allowed() {
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_nanos(1))
        .jitter(Jitter::Decorrelated)
        .build()
        .unwrap();
    assert_eq!(policy.deadline(), Some(Duration::from_nanos(1)));
    assert_eq!(policy.jitter(), Jitter::Decorrelated);
}

#[test]
fn error_messages_name_the_offending_field() {
    let cases: &[(PolicyError, &[&str])] = &[
        (
            PolicyError::TooManyRetries { max_retries: 101 },
            &["max_retries", "101", "100"],
        ),
        (
            PolicyError::CapBelowBase {
                base: ms(500),
                cap: ms(499),
            },
            &["cap", "base", "500ms", "499ms"],
        ),
        (PolicyError::ZeroBase, &["base", "exponential"]),
        (
            PolicyError::DecorrelatedNeedsExponential,
            &["decorrelated", "jitter", "exponential", "backoff"],
        ),
        (PolicyError::ZeroDeadline, &["deadline"]),
    ];
    for (error, words) in cases {
        let message = error.to_string();
        for word in *words {
            assert!(
                message.contains(word),
                "{error:?}: message {message:?} should mention {word:?}"
            );
        }
    }
}

#[test]
fn policy_error_is_a_std_error() {
    let error: Box<dyn std::error::Error + Send + Sync> = Box::new(PolicyError::ZeroDeadline);
    assert!(error.source().is_none());
}

#[test]
fn default_policy_matches_the_attribute_defaults() {
    let policy = RetryPolicy::default();
    assert_eq!(policy, RetryPolicy::DEFAULT);
    assert_eq!(policy, RetryPolicy::builder().build().unwrap());
    assert_eq!(policy.max_retries(), 3);
    assert_eq!(policy.retry_on(), RetryOn::Transient);
    assert_eq!(policy.backoff(), Backoff::Exponential);
    assert_eq!(policy.base(), ms(100));
    assert_eq!(policy.cap(), Duration::from_secs(5));
    assert_eq!(policy.jitter(), Jitter::Full);
    assert_eq!(policy.deadline(), None);
    assert!(policy.idempotent());
}

#[test]
fn builder_setters_are_reflected_in_the_policy() {
    let policy = RetryPolicy::builder()
        .max_retries(7)
        .retry_on(RetryOn::Contention)
        .backoff(Backoff::Fixed)
        .base(ms(20))
        .cap(ms(40))
        .jitter(Jitter::Equal)
        .deadline(Duration::from_secs(3))
        .idempotent(false)
        .build()
        .unwrap();
    assert_eq!(policy.max_retries(), 7);
    assert_eq!(policy.retry_on(), RetryOn::Contention);
    assert_eq!(policy.backoff(), Backoff::Fixed);
    assert_eq!(policy.base(), ms(20));
    assert_eq!(policy.cap(), ms(40));
    assert_eq!(policy.jitter(), Jitter::Equal);
    assert_eq!(policy.deadline(), Some(Duration::from_secs(3)));
    assert!(!policy.idempotent());
}

#[test]
fn non_idempotent_policy_does_not_retry_classes_that_may_have_run() {
    use db_retry_runtime::ErrorClass::*;
    let policy = RetryPolicy::builder().idempotent(false).build().unwrap();
    assert!(!policy.retries_class(ConnectionLost));
    assert!(policy.retries_class(Connect));
    assert!(policy.retries_class(Contention));
    assert!(policy.retries_class(Unavailable));
    assert!(!policy.retries_class(Permanent));
    assert!(RetryPolicy::default().retries_class(ConnectionLost));
}
