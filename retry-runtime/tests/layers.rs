//! One retrying layer, as pure logic on tokio's paused clock: a retried call inside another's
//! attempt hands up exactly the errors the outer call retries, retries the rest itself, and a
//! panic, a sibling or a spawned task never leaves a call thinking it is nested.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry_runtime::{retry, Backoff, RetryOn, RetryPolicy};

fn policy(on: RetryOn, max: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .retry_on(on)
        .max_retries(max)
        .backoff(Backoff::Fixed)
        .base(Duration::from_millis(10))
        .jitter(db_retry_runtime::Jitter::None)
        .build()
        .unwrap()
}

fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

/// Fails with a reset for the first `fail_first` runs (counted in `runs`).
async fn flaky(runs: &AtomicU32, fail_first: u32) -> Result<u32, io::Error> {
    let run = runs.fetch_add(1, Ordering::SeqCst);
    if run < fail_first {
        Err(reset())
    } else {
        Ok(run)
    }
}

#[tokio::test(start_paused = true)]
async fn the_outer_call_retries_what_it_would_retry_and_the_inner_hands_it_up() {
    let (outer, inner) = (AtomicU32::new(0), AtomicU32::new(0));
    let transient = policy(RetryOn::Transient, 3);

    let result = retry(&transient, || async {
        outer.fetch_add(1, Ordering::SeqCst);
        retry(&transient, || flaky(&inner, u32::MAX)).await
    })
    .await;

    assert!(result.is_err());
    assert_eq!(outer.load(Ordering::SeqCst), 4);
    assert_eq!(
        inner.load(Ordering::SeqCst),
        4,
        "once per outer attempt, not 16"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inner_call_retries_what_the_outer_call_would_not() {
    let (outer, inner) = (AtomicU32::new(0), AtomicU32::new(0));
    // The outer call retries only contention; a reset is the inner call's to retry.
    let contention = policy(RetryOn::Contention, 3);
    let transient = policy(RetryOn::Transient, 3);

    let result = retry(&contention, || async {
        outer.fetch_add(1, Ordering::SeqCst);
        retry(&transient, || flaky(&inner, 2)).await
    })
    .await;

    assert_eq!(result.unwrap(), 2);
    assert_eq!(outer.load(Ordering::SeqCst), 1);
    assert_eq!(inner.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_outer_call_without_retries_leaves_them_to_the_inner_call() {
    let (outer, inner) = (AtomicU32::new(0), AtomicU32::new(0));
    let once = policy(RetryOn::Transient, 0);
    let transient = policy(RetryOn::Transient, 3);

    let result = retry(&once, || async {
        outer.fetch_add(1, Ordering::SeqCst);
        retry(&transient, || flaky(&inner, 2)).await
    })
    .await;

    assert_eq!(result.unwrap(), 2);
    assert_eq!(
        (outer.load(Ordering::SeqCst), inner.load(Ordering::SeqCst)),
        (1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn siblings_and_spawned_tasks_are_calls_of_their_own() {
    let transient = policy(RetryOn::Transient, 3);
    let (left, right) = (AtomicU32::new(0), AtomicU32::new(0));

    let (a, b) = tokio::join!(
        retry(&transient, || flaky(&left, 2)),
        retry(&transient, || flaky(&right, 3)),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (2, 3));

    // A task spawned from inside an attempt is polled by the runtime, outside the attempt.
    let outer = AtomicU32::new(0);
    let spawned = retry(&transient, || async {
        outer.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async {
            let runs = AtomicU32::new(0);
            let policy = policy(RetryOn::Transient, 3);
            retry(&policy, || flaky(&runs, 2))
                .await
                .map(|_| runs.into_inner())
        })
        .await
        .expect("the spawned task")
    })
    .await;
    assert_eq!(
        spawned.unwrap(),
        3,
        "the spawned call retried twice by itself"
    );
    assert_eq!(outer.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_attempt_leaves_no_call_nested() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let transient = policy(RetryOn::Transient, 3);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(retry(&transient, || async {
            panic!("the body panics");
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        }))
    }));
    assert!(panicked.is_err());

    // On the same thread, a call at the top must still retry by itself.
    let runs = AtomicU32::new(0);
    let result = runtime.block_on(retry(&transient, || flaky(&runs, 2)));
    assert_eq!(result.unwrap(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[test]
fn the_enclosing_call_fits_in_eight_bytes() {
    // Every poll of an attempt swaps it into a thread-local and back: a wider one measured
    // 2 ns more per call in benches/happy_path.rs.
    assert_eq!(
        std::mem::size_of::<Option<db_retry_runtime::layers::Enclosing>>(),
        8
    );
}
