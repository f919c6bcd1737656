//! The metrics of retried calls, read back from a recorder: first attempts counted on the happy
//! path under the function's name, retries by class with their delays, give-ups by reason,
//! budget exhaustion and breaker transitions.

// The turn lock orders the tests, each on a runtime of its own; no two tasks of one runtime
// ever wait for it.
#![allow(clippy::await_holding_lock)]

use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use db_retry_macros::db_retry;
use db_retry_runtime::{
    retry, Backoff, CircuitBreaker, Jitter, RetryBudget, RetryPolicy, RetryPolicyBuilder,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The recorder, installed once for this binary before any call; tests take turns, since
/// reading a counter resets it.
fn recorder() -> (MutexGuard<'static, ()>, &'static Snapshotter) {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    });
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (turn, snapshotter)
}

/// What was recorded since the last reading, as `name{label=value,...}` → value.
fn read(snapshotter: &Snapshotter) -> Vec<(String, DebugValue)> {
    let mut values: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n > 0,
            DebugValue::Histogram(samples) => !samples.is_empty(),
            DebugValue::Gauge(_) => true,
        })
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

fn counter(values: &[(String, DebugValue)], name: &str) -> u64 {
    match values.iter().find(|(key, _)| key == name) {
        Some((_, DebugValue::Counter(n))) => *n,
        Some((_, other)) => panic!("{name} is not a counter: {other:?}"),
        None => 0,
    }
}

fn policy(name: &'static str, max: u32) -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .name(name)
        .max_retries(max)
        .base(Duration::from_millis(100))
        .jitter(Jitter::None)
        .no_budget()
}

async fn call(policy: &RetryPolicy, failures: u32, kind: io::ErrorKind) -> Result<(), io::Error> {
    let mut attempt = 0;
    retry(policy, || {
        attempt += 1;
        let fail = attempt <= failures;
        async move {
            if fail {
                Err(io::Error::from(kind))
            } else {
                Ok(())
            }
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn first_attempts_retries_by_class_and_their_delays() {
    let (_turn, snapshotter) = recorder();
    read(snapshotter);
    let policy = policy("orders::find", 3).build().unwrap();
    for _ in 0..5 {
        call(&policy, 0, io::ErrorKind::ConnectionReset)
            .await
            .unwrap();
    }
    call(&policy, 2, io::ErrorKind::ConnectionReset)
        .await
        .unwrap();
    call(&policy, 1, io::ErrorKind::ConnectionRefused)
        .await
        .unwrap();

    let values = read(snapshotter);
    assert_eq!(
        counter(&values, "db_retry_attempts_total{function=orders::find}"),
        7 + 3,
        "{values:?}"
    );
    assert_eq!(
        counter(
            &values,
            "db_retry_retries_total{function=orders::find,class=connection_lost}"
        ),
        2
    );
    assert_eq!(
        counter(
            &values,
            "db_retry_retries_total{function=orders::find,class=connect}"
        ),
        1
    );
    let delays = values
        .iter()
        .find(|(key, _)| {
            key == "db_retry_backoff_seconds{function=orders::find,class=connection_lost}"
        })
        .map(|(_, value)| value);
    assert_eq!(
        delays,
        Some(&DebugValue::Histogram(vec![0.1.into(), 0.2.into()])),
        "{values:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn give_ups_by_reason() {
    let (_turn, snapshotter) = recorder();
    read(snapshotter);
    let reset = io::ErrorKind::ConnectionReset;

    let max = policy("give_up::max", 1).build().unwrap();
    call(&max, 5, reset).await.unwrap_err();

    let deadline = policy("give_up::deadline", 10)
        .deadline(Duration::from_millis(250))
        .build()
        .unwrap();
    call(&deadline, 50, reset).await.unwrap_err();

    let not_idempotent = policy("give_up::not_idempotent", 3)
        .idempotent(false)
        .build()
        .unwrap();
    call(&not_idempotent, 5, reset).await.unwrap_err();

    static BUDGET: RetryBudget = RetryBudget::new(0, 0, Duration::from_secs(10));
    let budget = policy("give_up::budget", 3)
        .budget(&BUDGET)
        .build()
        .unwrap();
    call(&budget, 5, reset).await.unwrap_err();
    call(&budget, 5, reset).await.unwrap_err();

    // A permanent error is not giving up: nothing was worth retrying.
    call(&max, 5, io::ErrorKind::InvalidInput)
        .await
        .unwrap_err();

    let values = read(snapshotter);
    let give_ups = |function: &str, reason: &str| {
        counter(
            &values,
            &format!(
                "db_retry_give_ups_total{{function={function},class=connection_lost,reason={reason}}}"
            ),
        )
    };
    assert_eq!(give_ups("give_up::max", "max"), 1, "{values:?}");
    assert_eq!(give_ups("give_up::deadline", "deadline"), 1, "{values:?}");
    assert_eq!(
        give_ups("give_up::not_idempotent", "not_idempotent"),
        1,
        "{values:?}"
    );
    assert_eq!(give_ups("give_up::budget", "budget"), 2, "{values:?}");
    assert_eq!(
        counter(
            &values,
            "db_retry_budget_exhausted_total{function=give_up::budget}"
        ),
        2
    );
    let all_give_ups: u64 = values
        .iter()
        .filter(|(key, _)| key.starts_with("db_retry_give_ups_total"))
        .map(|(key, _)| counter(&values, key))
        .sum();
    assert_eq!(all_give_ups, 5, "{values:?}");
}

#[tokio::test(start_paused = true)]
async fn breaker_transitions_and_whether_it_is_open() {
    let (_turn, snapshotter) = recorder();
    read(snapshotter);
    static BREAKER: CircuitBreaker = CircuitBreaker::new("metrics")
        .consecutive_failures(2)
        .open_for(Duration::from_secs(1));
    let policy = policy("breaker::call", 5)
        .backoff(Backoff::None)
        .breaker(&BREAKER)
        .build()
        .unwrap();
    call(&policy, 5, io::ErrorKind::ConnectionRefused)
        .await
        .unwrap_err();
    let values = read(snapshotter);
    assert_eq!(
        counter(
            &values,
            "db_retry_breaker_transitions_total{breaker=metrics,from=closed,to=open}"
        ),
        1,
        "{values:?}"
    );
    assert!(values.contains(&(
        "db_retry_breaker_open{breaker=metrics}".to_owned(),
        DebugValue::Gauge(1.0.into())
    )));
    assert_eq!(
        counter(
            &values,
            "db_retry_give_ups_total{function=breaker::call,class=connect,reason=breaker}"
        ),
        1
    );
    // A fail-fast call refused without running is counted as such.
    assert!(policy.admit().is_err());
    let values = read(snapshotter);
    assert_eq!(
        counter(
            &values,
            "db_retry_breaker_rejected_total{function=breaker::call,breaker=metrics}"
        ),
        1,
        "{values:?}"
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    call(&policy, 0, io::ErrorKind::ConnectionRefused)
        .await
        .unwrap();
    let values = read(snapshotter);
    assert_eq!(
        counter(
            &values,
            "db_retry_breaker_transitions_total{breaker=metrics,from=open,to=half_open}"
        ),
        1,
        "{values:?}"
    );
    assert_eq!(
        counter(
            &values,
            "db_retry_breaker_transitions_total{breaker=metrics,from=half_open,to=closed}"
        ),
        1
    );
    assert!(values.contains(&(
        "db_retry_breaker_open{breaker=metrics}".to_owned(),
        DebugValue::Gauge(0.0.into())
    )));
}

#[db_retry(crate = db_retry_runtime, max = 2, base = 10ms, jitter = none, budget = none)]
async fn attributed(failures: &std::sync::atomic::AtomicU32) -> Result<(), io::Error> {
    use std::sync::atomic::Ordering;
    if failures.load(Ordering::SeqCst) > 0 {
        failures.fetch_sub(1, Ordering::SeqCst);
        return Err(io::Error::from(io::ErrorKind::ConnectionReset));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_attribute_names_the_function_by_its_path() {
    let (_turn, snapshotter) = recorder();
    read(snapshotter);
    let failures = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..3 {
        attributed(&failures).await.unwrap();
    }
    failures.store(1, std::sync::atomic::Ordering::SeqCst);
    attributed(&failures).await.unwrap();
    let values = read(snapshotter);
    assert_eq!(
        counter(
            &values,
            "db_retry_attempts_total{function=metrics::attributed}"
        ),
        5,
        "{values:?}"
    );
    assert_eq!(
        counter(
            &values,
            "db_retry_retries_total{function=metrics::attributed,class=connection_lost}"
        ),
        1
    );
}
