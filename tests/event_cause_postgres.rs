//! The events name what a failed call met, against real servers: the error that decided the
//! class (a terminated backend behind an application error whose message hides it), and the fix
//! for a setup that refuses sqlx (PgBouncer without `ignore_startup_parameters`). A test binary
//! of its own: tracing caches which events a callsite sends, and other tests emitting the same events
//! without a subscriber on other threads would race with this one's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use db_retry::db_retry;
use db_retry_test_kit::pg::{backend_pid, PgServer};
use db_retry_test_kit::pgbouncer::PgBouncer;
use sqlx::{PgConnection, PgPool};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// An application error whose message hides its cause, as many do.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("an error occurred with the database")]
    Sqlx(#[from] sqlx::Error),
}

#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn read_through_app_error(
    #[acquire] conn: &mut PgConnection,
    server: &PgServer,
    attempts: &AtomicU32,
) -> Result<i32, AppError> {
    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
        let pid = backend_pid(conn).await;
        server.terminate_backend(pid).await;
    }
    Ok(sqlx::query_scalar("SELECT 42")
        .fetch_one(&mut *conn)
        .await?)
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

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
        if event.metadata().target() == "db_retry" {
            let mut fields = Fields(BTreeMap::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

/// Runs `f` on a runtime of its own with a subscriber that records db-retry's events (their
/// fields by name), and returns its output and the events.
fn recorded<T>(f: impl std::future::Future<Output = T>) -> (T, Vec<BTreeMap<String, String>>) {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let output = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
    let events = recorder.0.lock().unwrap().clone();
    (output, events)
}

#[test]
fn the_retry_event_names_the_error_the_wrapper_hides() {
    let (answer, events) = recorded(async {
        let server = PgServer::start();
        let pool: PgPool = server.pool(4).await;
        let attempts = AtomicU32::new(0);
        read_through_app_error(&pool, &server, &attempts).await
    });

    assert_eq!(answer.expect("the retry succeeds"), 42);
    let retry = events
        .iter()
        .find(|event| event.contains_key("retry"))
        .unwrap_or_else(|| panic!("a retry event: {events:?}"));
    assert_eq!(retry["error"], "an error occurred with the database");
    assert_eq!(retry["class"], "connection_lost");
    let cause = retry
        .get("cause")
        .unwrap_or_else(|| panic!("a cause: {retry:?}"));
    assert!(
        cause.starts_with("57P01: terminating connection due to administrator command"),
        "the SQLSTATE and message that decided the class: {cause}"
    );
}

#[db_retry(max = 3, base = 1ms)]
async fn one(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[test]
fn a_setup_that_refuses_sqlx_is_a_warn_with_the_fix() {
    let (error, events) = recorded(async {
        let server = PgServer::start();
        let bouncer = PgBouncer::builder(&server)
            .without_ignore_startup_parameters()
            .start_listening();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy(&bouncer.url())
            .unwrap();
        one(&pool).await.unwrap_err()
    });
    assert!(
        error.to_string().contains("unsupported startup parameter"),
        "{error}"
    );
    let setup = events
        .iter()
        .find(|event| event.contains_key("hint"))
        .unwrap_or_else(|| panic!("an event with the hint: {events:?}"));
    assert_eq!(setup["class"], "permanent");
    assert!(
        setup["hint"].contains("ignore_startup_parameters = extra_float_digits"),
        "{setup:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|event| event.contains_key("retry"))
            .count(),
        0,
        "not retried: {events:?}"
    );
}
