//! The retry budget on tokio's paused clock: retries may add a share of first attempts plus a
//! floor per second over a sliding window; past that the error returns at once, and an
//! exhausted budget says so once per slot rather than once per call.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry_runtime::{retry, Backoff, Jitter, RetryBudget, RetryPolicy};

fn policy(budget: &'static RetryBudget, max: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max)
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .budget(budget)
        .build()
        .unwrap()
}

/// One call whose first `failures` attempts fail with a reset; returns how many attempts ran.
async fn call(policy: &RetryPolicy, failures: u32) -> u32 {
    let attempts = AtomicU32::new(0);
    let _ = retry(policy, || {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst);
        async move {
            if attempt < failures {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            } else {
                Ok(())
            }
        }
    })
    .await;
    attempts.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn retries_may_add_their_share_of_first_attempts() {
    // 20 % and no floor: call k (k first attempts so far) may retry while the retries granted
    // are fewer than (k - 1) / 5, counting from the first call that asked.
    static BUDGET: RetryBudget = RetryBudget::new(20, 0, Duration::from_secs(10));
    let policy = policy(&BUDGET, 3);
    let mut retried = 0;
    for _ in 0..100 {
        if call(&policy, 1).await == 2 {
            retried += 1;
        }
    }
    // Granted at calls 6, 11, …, 96.
    assert_eq!(retried, 19);
    assert_eq!(BUDGET.deposits(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_service_still_gets_the_floor() {
    // No share, 10 retries a second over a 1 s window: 10 retries, then none.
    static BUDGET: RetryBudget = RetryBudget::new(0, 10, Duration::from_secs(1));
    let policy = policy(&BUDGET, 3);
    let attempts = call(&policy, 100).await
        + call(&policy, 100).await
        + call(&policy, 100).await
        + call(&policy, 100).await;
    // 4 first attempts, then 3 + 3 + 3 + 1 retries.
    assert_eq!(attempts, 4 + 10);
    assert_eq!(
        call(&policy, 100).await,
        1,
        "spent: the error returns at once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_and_the_budget_comes_back() {
    static BUDGET: RetryBudget = RetryBudget::new(0, 5, Duration::from_secs(1));
    let policy = policy(&BUDGET, 10);
    assert_eq!(call(&policy, 100).await, 1 + 5);
    assert_eq!(call(&policy, 100).await, 1);
    // Half a window later the old retries still count.
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(call(&policy, 100).await, 1);
    // A whole window after them they no longer do.
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(call(&policy, 100).await, 1 + 5);
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_only_max_limits_retries() {
    let policy = RetryPolicy::builder()
        .max_retries(3)
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    assert!(policy.budget().is_none());
    for _ in 0..200 {
        assert_eq!(call(&policy, 100).await, 4);
    }
}

#[test]
fn every_policy_draws_on_the_process_budget_by_default() {
    let global: *const RetryBudget = RetryBudget::global();
    assert!(std::ptr::eq(
        RetryPolicy::default().budget().unwrap(),
        global
    ));
    let built = RetryPolicy::builder().build().unwrap();
    assert!(std::ptr::eq(built.budget().unwrap(), global));
    let global = RetryBudget::global();
    assert_eq!(
        (global.percent(), global.floor_per_second(), global.window()),
        (20, 10, Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn first_attempts_before_the_first_failure_count_too() {
    // Five quiet seconds of 2,000 calls a second, then every call fails once: the window's
    // 20 % covers the quiet seconds' first attempts, not only the failing calls'.
    static BUDGET: RetryBudget = RetryBudget::new(20, 0, Duration::from_secs(10));
    for _ in 0..5_000 {
        BUDGET.deposit();
        BUDGET.deposit();
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let policy = policy(&BUDGET, 1);
    let mut retried = 0;
    for _ in 0..3_000 {
        if call(&policy, 1).await == 2 {
            retried += 1;
        }
    }
    // Counting from the failures alone would grant about 600 (20 % of 3,000).
    assert!(retried > 2_000, "{retried} retries");
    assert!(retried <= 13_000 / 5, "{retried} retries");
}

#[tokio::test(start_paused = true)]
async fn calls_inside_a_retried_call_are_part_of_its_first_attempt() {
    // Each outer attempt makes five inner calls that succeed. Counting them would let every
    // outer retry earn more than it spends; only the outer calls count.
    static BUDGET: RetryBudget = RetryBudget::new(20, 0, Duration::from_secs(10));
    let policy = policy(&BUDGET, 3);
    let attempts = AtomicU32::new(0);
    for _ in 0..100 {
        let _ = retry(&policy, || {
            attempts.fetch_add(1, Ordering::SeqCst);
            let policy = &policy;
            async move {
                for _ in 0..5 {
                    call(policy, 0).await;
                }
                Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
            }
        })
        .await;
    }
    assert_eq!(BUDGET.deposits(), 100, "one deposit per outer call");
    let retries = attempts.load(Ordering::SeqCst) - 100;
    assert!(retries <= 20, "{retries} retries for 100 calls at 20 %");
}

#[test]
fn the_floor_is_rounded_up_over_short_windows() {
    // 5 a second over 150 ms is 0.75 retries: one, not none.
    static BUDGET: RetryBudget = RetryBudget::new(0, 5, Duration::from_millis(150));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let attempts = runtime.block_on(call(&policy(&BUDGET, 3), 100));
    assert_eq!(attempts, 2);
}
