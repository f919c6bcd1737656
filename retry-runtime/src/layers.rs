//! One retrying layer. A retried call made while another retried call's attempt is running, on
//! the same task, leaves the retrying to that outer call when the outer call's policy would retry
//! the error; otherwise it retries by itself. Without this a retried handler calling a retried
//! helper would run the helper's query up to `(max + 1)²` times.
//!
//! An attempt publishes its call's policy in a thread-local for exactly as long as it is being
//! polled. Code nested in the attempt (on the same task) runs inside that poll and sees it; a
//! spawned task is polled by the runtime on its own, outside it, and is a call of its own.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::classify::ErrorClass;
use crate::policy::{RetryOn, RetryPolicy};

/// What a nested call needs to know of the call around it: which errors it retries, and which
/// circuit breaker it reports to.
///
/// Kept to eight bytes: every poll of an attempt swaps it into a thread-local and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enclosing {
    retry_on: RetryOn,
    idempotent: bool,
    retries: bool,
    /// The call's circuit breaker as a tag of its address (0: none), so that a nested call on
    /// the same breaker leaves reporting to the enclosing call and one failure counts once. Two
    /// breakers could share a tag only if their addresses differed in the bits it drops; the
    /// cost would be a failure counted once too few.
    breaker: u32,
}

/// The tag [`Enclosing`] keeps of a breaker: its address, without the bits alignment zeroes,
/// never 0.
pub(crate) fn breaker_tag(breaker: &crate::CircuitBreaker) -> u32 {
    let address = breaker as *const crate::CircuitBreaker as usize;
    ((address >> 3) as u32) | 1
}

impl Enclosing {
    /// The part of `policy` a nested call looks at.
    #[inline]
    pub fn of(policy: &RetryPolicy) -> Self {
        Enclosing {
            retry_on: policy.retry_on,
            idempotent: policy.idempotent,
            retries: policy.max_retries > 0,
            breaker: policy.breaker.0.map_or(0, breaker_tag),
        }
    }

    /// Whether the enclosing call certainly retries an error of `class` that ends its attempt.
    ///
    /// A call that is not idempotent re-runs an attempt only where nothing of it can have taken
    /// effect, which the nested call cannot see, so it is never counted on: the nested call
    /// keeps its own retries.
    fn retries(self, class: Option<ErrorClass>) -> bool {
        self.retries
            && self.idempotent
            && match class {
                Some(class) => self.retry_on.covers(class),
                // A classifier of the enclosing call's own decides there; a `bool` verdict inside
                // gives no class to ask it about, so the inner call keeps its retries.
                None => false,
            }
    }
}

/// Where an attempt gets its call's policy from: the policy itself, or (in generated code) a
/// function returning a `static`, which takes no room in the future.
pub trait CallPolicy {
    /// The enclosing-call summary of the policy.
    fn enclosing(&self) -> Enclosing;
}

impl CallPolicy for Enclosing {
    #[inline]
    fn enclosing(&self) -> Enclosing {
        *self
    }
}

impl<F: Fn() -> &'static RetryPolicy> CallPolicy for F {
    #[inline]
    fn enclosing(&self) -> Enclosing {
        Enclosing::of(self())
    }
}

thread_local! {
    /// The policy of the retried call whose attempt is being polled on this thread, if any.
    static ENCLOSING: Cell<Option<Enclosing>> = const { Cell::new(None) };
    /// The breaker (its tag) a nested call has just reported a failure to and handed or
    /// returned that error up: the enclosing call that judges the same error next, in the same
    /// poll, does not report it again.
    static REPORTED: Cell<u32> = const { Cell::new(0) };
}

/// The error leaving this call was reported to the breaker tagged `tag` (0: none).
pub(crate) fn mark_reported(tag: u32) {
    if tag != 0 && inside_an_attempt() {
        let _ = REPORTED.try_with(|reported| reported.set(tag));
    }
}

/// The breaker a call inside this one reported the error now being judged to (its tag, 0 for
/// none); judging it takes the mark, so a later error is not mistaken for this one.
pub(crate) fn take_reported() -> u32 {
    REPORTED
        .try_with(|reported| {
            if reported.get() == 0 {
                0
            } else {
                reported.replace(0)
            }
        })
        .unwrap_or(0)
}

/// A call on a breaker succeeded: an error a nested call reported and this call handled is
/// not the one a later failure brings.
pub(crate) fn clear_reported() {
    let _ = REPORTED.try_with(|reported| {
        if reported.get() != 0 {
            reported.set(0);
        }
    });
}

pin_project! {
    /// An attempt of a retried call: while it is polled, retried calls inside it know which
    /// errors the call around them retries.
    pub struct Attempt<F, P> {
        #[pin]
        inner: F,
        policy: P,
    }
}

/// Run `inner` as an attempt of a call retried under `policy`.
#[inline]
pub fn as_attempt<F: Future, P: CallPolicy>(inner: F, policy: P) -> Attempt<F, P> {
    Attempt { inner, policy }
}

impl<F: Future, P: CallPolicy> Future for Attempt<F, P> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = ENCLOSING
            .try_with(|enclosing| enclosing.replace(Some(this.policy.enclosing())))
            .ok()
            .flatten();
        // Restored however the poll ends, a panic included.
        let _restore = Restore(outer);
        this.inner.poll(cx)
    }
}

struct Restore(Option<Enclosing>);

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        let _ = ENCLOSING.try_with(|enclosing| enclosing.set(self.0));
    }
}

/// Whether this code runs inside an attempt of another retried call, on the same task, whose
/// policy retries an error of `class`.
/// Whether a retried call's attempt is being polled on this thread: a call inside it is part of
/// that call's unit of work, whose first attempt the budget already counted.
#[inline(always)]
pub(crate) fn inside_an_attempt() -> bool {
    ENCLOSING
        .try_with(|enclosing| enclosing.get().is_some())
        .unwrap_or(false)
}

/// Whether the retried call around this one, if any, reports to `breaker` too.
pub(crate) fn enclosing_call_reports_to(breaker: &crate::CircuitBreaker) -> bool {
    let tag = breaker_tag(breaker);
    ENCLOSING
        .try_with(|enclosing| enclosing.get())
        .ok()
        .flatten()
        .is_some_and(|enclosing| enclosing.breaker == tag)
}

pub(crate) fn enclosing_call_retries(class: Option<ErrorClass>) -> bool {
    ENCLOSING
        .try_with(|enclosing| enclosing.get())
        .ok()
        .flatten()
        .is_some_and(|enclosing| enclosing.retries(class))
}
