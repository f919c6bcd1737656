//! One retrying layer. A retried call made while another retried call's attempt is running, on
//! the same task, does not retry: it hands its error up, and only the outermost call retries.
//! Otherwise a retried handler calling a retried helper would run the helper's query up to
//! `(max + 1)²` times.
//!
//! Attempts mark themselves in a thread-local counter for exactly as long as they are being
//! polled. Code nested in an attempt (on the same task) runs inside that poll and sees the mark;
//! a spawned task is polled by the runtime on its own, outside it, and is a call of its own.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

thread_local! {
    /// How many retried calls' attempts are being polled on this thread right now.
    static ATTEMPTS_IN_POLL: Cell<u32> = const { Cell::new(0) };
}

pin_project! {
    /// An attempt of a retried call: while it is polled, retried calls inside it know they are
    /// nested.
    pub struct Attempt<F> {
        #[pin]
        inner: F,
    }
}

/// Run `inner` as an attempt of a retried call.
#[inline]
pub fn as_attempt<F: Future>(inner: F) -> Attempt<F> {
    Attempt { inner }
}

impl<F: Future> Future for Attempt<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        ATTEMPTS_IN_POLL.with(|depth| depth.set(depth.get() + 1));
        // Unmarked however the poll ends, a panic included.
        let _polled = Polled;
        self.project().inner.poll(cx)
    }
}

struct Polled;

impl Drop for Polled {
    #[inline]
    fn drop(&mut self) {
        ATTEMPTS_IN_POLL.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Whether this code runs inside an attempt of another retried call, on the same task.
pub(crate) fn inside_another_retried_call() -> bool {
    ATTEMPTS_IN_POLL.with(|depth| depth.get() > 0)
}
