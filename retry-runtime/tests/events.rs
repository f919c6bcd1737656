//! The tracing events of a retried call: one WARN per retry carrying the class and whether the
//! statement may have run, a WARN when giving up on a transient error, a DEBUG on success after
//! retries, and nothing at all on the happy path.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db_retry_runtime::{retry, Jitter, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone)]
struct Event {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Fields(BTreeMap<String, String>);
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        assert_eq!(event.metadata().target(), "db_retry");
        self.0.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            fields: fields.0,
        });
    }
}

/// Runs `f` on a current-thread runtime with paused time, recording every event.
fn recorded<F: std::future::Future>(f: F) -> (F::Output, Vec<Event>) {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let output = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f)
    });
    let events = recorder.0.lock().unwrap().clone();
    (output, events)
}

fn no_jitter(max: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max)
        .base(Duration::from_millis(100))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

#[test]
fn happy_path_emits_nothing() {
    let policy = no_jitter(3);
    let (result, events) = recorded(retry(&policy, || async { Ok::<_, io::Error>(1) }));
    assert_eq!(result.unwrap(), 1);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn each_retry_is_a_warn_with_class_delay_and_may_have_run() {
    let policy = no_jitter(3);
    let mut failures = 2;
    let (result, events) = recorded(retry(&policy, || {
        let fail = failures > 0;
        failures -= 1;
        async move {
            if fail {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            } else {
                Ok(7)
            }
        }
    }));

    assert_eq!(result.unwrap(), 7);
    assert_eq!(events.len(), 3, "{events:?}");
    for (i, event) in events[..2].iter().enumerate() {
        assert_eq!(event.level, tracing::Level::WARN);
        assert_eq!(event.fields["retry"], (i + 1).to_string());
        assert_eq!(event.fields["delay_ms"], ["100", "200"][i]);
        assert_eq!(event.fields["class"], "connection_lost");
        assert_eq!(event.fields["may_have_run"], "true");
        assert!(event.fields["error"].contains("reset"), "{event:?}");
        assert!(event.fields["function"].contains("events"), "{event:?}");
    }
    assert_eq!(events[2].level, tracing::Level::DEBUG);
    assert_eq!(events[2].fields["attempts"], "3");
}

#[test]
fn giving_up_on_a_transient_error_says_why() {
    let policy = no_jitter(1);
    let (result, events) = recorded(retry(&policy, || async {
        Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused))
    }));

    assert!(result.is_err());
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].fields["class"], "connect");
    assert_eq!(events[0].fields["may_have_run"], "false");
    assert_eq!(events[1].level, tracing::Level::WARN);
    assert_eq!(events[1].fields["reason"], "no retries left");
    assert_eq!(events[1].fields["attempts"], "2");
}

#[test]
fn not_idempotent_gives_up_with_that_reason() {
    let policy = RetryPolicy::builder().idempotent(false).build().unwrap();
    let (result, events) = recorded(retry(&policy, || async {
        Err::<(), _>(io::Error::from(io::ErrorKind::UnexpectedEof))
    }));

    assert!(result.is_err());
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].fields["reason"].contains("not idempotent"),
        "{events:?}"
    );
    assert_eq!(events[0].fields["class"], "connection_lost");
}

#[test]
fn permanent_errors_emit_nothing() {
    let policy = no_jitter(3);
    let (result, events) = recorded(retry(&policy, || async {
        Err::<(), _>(sqlx::Error::RowNotFound)
    }));
    assert!(result.is_err());
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_nested_call_handing_its_error_up_says_so_at_debug() {
    let policy = no_jitter(1);
    let (result, events) = recorded(retry(&policy, || async {
        retry(&policy, || async {
            Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
        })
        .await
    }));

    assert!(result.is_err());
    let handed_up: Vec<_> = events
        .iter()
        .filter(|event| event.fields["message"].starts_with("not retrying here"))
        .collect();
    assert_eq!(handed_up.len(), 2, "once per outer attempt: {events:?}");
    assert!(handed_up
        .iter()
        .all(|event| event.level == tracing::Level::DEBUG));
    assert_eq!(handed_up[0].fields["class"], "connection_lost");
    // The outer call retried once and gave up: those are its own WARN events.
    let warns = events
        .iter()
        .filter(|event| event.level == tracing::Level::WARN)
        .count();
    assert_eq!(warns, 2, "{events:?}");
}

#[test]
fn the_cause_names_what_decided_the_class_when_the_message_hides_it() {
    #[derive(Debug)]
    struct Hidden(io::Error);
    impl std::fmt::Display for Hidden {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an error occurred")
        }
    }
    impl std::error::Error for Hidden {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let policy = no_jitter(1);
    let mut first = true;
    let (result, events) = recorded(retry(&policy, || {
        let fail = std::mem::take(&mut first);
        async move {
            if fail {
                Err(Hidden(io::Error::from(io::ErrorKind::ConnectionReset)))
            } else {
                Ok(1)
            }
        }
    }));

    assert_eq!(result.unwrap(), 1);
    assert_eq!(events[0].fields["error"], "an error occurred");
    assert!(
        events[0].fields["cause"].starts_with("ConnectionReset"),
        "{:?}",
        events[0]
    );
}

#[test]
fn an_unreachable_host_is_a_failed_connect_only_while_getting_the_connection() {
    use db_retry_runtime::{Classify, Phase, Retrier, Verdict};
    let policy = no_jitter(3);
    let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
    let (_, events) = recorded(async {
        for phase in [Phase::Acquire, Phase::Statement] {
            Retrier::new(&policy, "route")
                .retry_after_in_phase(&unreachable, Verdict::Class(unreachable.classify()), phase)
                .expect("retried in both phases");
        }
    });
    assert_eq!(events.len(), 2, "{events:?}");
    // Getting the connection: nothing was sent.
    assert_eq!(events[0].fields["class"], "connect");
    assert_eq!(events[0].fields["may_have_run"], "false");
    // A route lost under an open connection: the statement may have run.
    assert_eq!(events[1].fields["class"], "connection_lost");
    assert_eq!(events[1].fields["may_have_run"], "true");
}

#[test]
fn giving_up_names_the_bound_that_ended_the_call() {
    use db_retry_runtime::AttemptTimedOut;
    let policy = no_jitter(1);
    let (_, events) = recorded(retry(&policy, || async {
        Err::<(), _>(sqlx::Error::from(AttemptTimedOut::new(
            Duration::from_secs(2),
        )))
    }));
    assert_eq!(events.last().unwrap().fields["bound"], "attempt_timeout");

    let (_, events) = recorded(retry(&policy, || async {
        Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
    }));
    assert_eq!(events.last().unwrap().fields["bound"], "max");

    let short = RetryPolicy::builder()
        .max_retries(10)
        .base(Duration::from_millis(600))
        .backoff(db_retry_runtime::Backoff::Fixed)
        .jitter(Jitter::None)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let (_, events) = recorded(retry(&short, || async {
        Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
    }));
    let last = events.last().unwrap();
    assert_eq!(last.fields["bound"], "deadline");
    assert_eq!(
        last.fields["reason"],
        "the deadline leaves no time for another attempt"
    );
}

#[test]
fn a_spent_budget_says_so_once_per_slot_not_once_per_call() {
    use db_retry_runtime::{Backoff, RetryBudget};
    static BUDGET: RetryBudget = RetryBudget::new(0, 1, Duration::from_secs(1));
    let policy = RetryPolicy::builder()
        .max_retries(3)
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .budget(&BUDGET)
        .build()
        .unwrap();
    let fail = || async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) };
    let (_, events) = recorded(async {
        // The one retry the floor allows, then a refusal in each of the 21 calls, all in the
        // same 100 ms slot: the first is reported.
        for _ in 0..21 {
            let _ = retry(&policy, fail).await;
        }
        // The next slot: one more refusal, reported with the 20 that went unsaid.
        tokio::time::advance(Duration::from_millis(100)).await;
        let _ = retry(&policy, fail).await;
    });
    let spent: Vec<_> = events
        .iter()
        .filter(|e| e.fields.get("bound").map(String::as_str) == Some("budget"))
        .collect();
    assert_eq!(spent.len(), 2, "{events:?}");
    assert_eq!(spent[0].level, tracing::Level::WARN);
    assert_eq!(spent[0].fields["reason"], "the retry budget is spent");
    assert_eq!(spent[0].fields["unreported"], "0");
    assert_eq!(spent[1].fields["unreported"], "20");
}

#[test]
fn a_breaker_says_when_it_opens_probes_and_closes_and_each_refusal_is_a_debug() {
    use db_retry_runtime::{Backoff, CircuitBreaker};
    static BREAKER: CircuitBreaker = CircuitBreaker::new("events")
        .consecutive_failures(2)
        .open_for(Duration::from_secs(1));
    let policy = RetryPolicy::builder()
        .max_retries(5)
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .no_budget()
        .breaker(&BREAKER)
        .build()
        .unwrap();
    let refused = || async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused)) };
    let (_, events) = recorded(async {
        // Two refused connects open it; the second call is refused its retry.
        let _ = retry(&policy, refused).await;
        let _ = retry(&policy, refused).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = retry(&policy, || async { Ok::<_, io::Error>(()) }).await;
    });
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.fields.contains_key("to"))
        .map(|e| (e.level, e.fields["from"].as_str(), e.fields["to"].as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            (tracing::Level::WARN, "closed", "open"),
            (tracing::Level::INFO, "open", "half_open"),
            (tracing::Level::INFO, "half_open", "closed"),
        ],
        "{events:?}"
    );
    let opened = events
        .iter()
        .find(|e| e.fields.get("to").map(String::as_str) == Some("open"));
    assert_eq!(opened.unwrap().fields["breaker"], "events");
    assert_eq!(opened.unwrap().fields["threshold"], "2");
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| e.fields.get("bound").map(String::as_str) == Some("breaker"))
        .collect();
    assert_eq!(refusals.len(), 2, "{events:?}");
    for refusal in refusals {
        assert_eq!(refusal.level, tracing::Level::DEBUG);
        assert_eq!(refusal.fields["breaker"], "events");
        assert_eq!(refusal.fields["breaker_state"], "open");
        assert_eq!(refusal.fields["class"], "connect");
    }
}
