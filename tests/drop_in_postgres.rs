//! `#[db_retry]` dropped into code written without it in mind, against a real PostgreSQL:
//! handler-style pattern arguments whose wrapper is not `Clone`, a retried function calling
//! another (only the outer one retries), and a spawned task (a call of its own). The retry event
//! naming the error a wrapper's message hides is `tests/event_cause_postgres.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use db_retry::db_retry;
use db_retry_test_kit::pg::{backend_pid, PgServer};
use sqlx::{PgConnection, PgPool};

/// Each of the first `kill_first` attempts (counted in `attempts`) has its backend terminated
/// before its query runs, so the query fails with 57P01.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn inner_read(
    #[acquire] conn: &mut PgConnection,
    server: &PgServer,
    attempts: &AtomicU32,
    kill_first: u32,
) -> Result<i32, sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < kill_first {
        let pid = backend_pid(conn).await;
        server.terminate_backend(pid).await;
    }
    sqlx::query_scalar("SELECT 42").fetch_one(&mut *conn).await
}

/// A retried function that calls a retried function, as a handler calling a repository does.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn outer_read(
    pool: &PgPool,
    server: &PgServer,
    outer: &AtomicU32,
    inner: &AtomicU32,
    kill_first: u32,
) -> Result<i32, sqlx::Error> {
    outer.fetch_add(1, Ordering::SeqCst);
    inner_read(pool, server, inner, kill_first).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_retried_calls_retry_once_not_squared() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(4).await;
    let (outer, inner) = (AtomicU32::new(0), AtomicU32::new(0));

    let error = outer_read(&pool, &server, &outer, &inner, u32::MAX)
        .await
        .expect_err("every inner query has its backend terminated");

    assert!(
        db_retry::Classify::classify(&error).is_transient(),
        "{error}"
    );
    assert_eq!(
        outer.load(Ordering::SeqCst),
        4,
        "the outer call retries: max = 3"
    );
    assert_eq!(
        inner.load(Ordering::SeqCst),
        4,
        "the inner query runs once per outer attempt (max + 1 = 4), not (max + 1)² = 16"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_retried_calls_recover_through_the_outer_retries() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(4).await;
    let (outer, inner) = (AtomicU32::new(0), AtomicU32::new(0));

    let answer = outer_read(&pool, &server, &outer, &inner, 2).await;

    assert_eq!(answer.expect("the third outer attempt succeeds"), 42);
    assert_eq!(outer.load(Ordering::SeqCst), 3);
    assert_eq!(inner.load(Ordering::SeqCst), 3);
}

/// A retried function that runs the inner one on a task of its own: that task is a call of its
/// own and retries by itself.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn outer_spawning(
    pool: &PgPool,
    server: &Arc<PgServer>,
    outer: &Arc<AtomicU32>,
    inner: &Arc<AtomicU32>,
) -> Result<i32, sqlx::Error> {
    outer.fetch_add(1, Ordering::SeqCst);
    let (pool, server, inner) = (pool.clone(), server.clone(), inner.clone());
    tokio::spawn(async move { inner_read(&pool, &server, &inner, 2).await })
        .await
        .expect("the spawned task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_task_is_a_call_of_its_own() {
    let server = Arc::new(PgServer::start());
    let pool: PgPool = server.pool(4).await;
    let (outer, inner) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));

    let answer = outer_spawning(&pool, &server, &outer, &inner).await;

    assert_eq!(answer.expect("the spawned call retries by itself"), 42);
    assert_eq!(
        outer.load(Ordering::SeqCst),
        1,
        "the outer call never saw an error"
    );
    assert_eq!(
        inner.load(Ordering::SeqCst),
        3,
        "the spawned call retried twice"
    );
}

// --- handler-style arguments -------------------------------------------------------------------

/// Stand-ins for axum's extractors: wrappers that are deliberately not `Clone`.
struct Path<T>(T);
struct Json<T>(T);

#[derive(Clone)]
struct NewNote {
    body: String,
}

/// Written as a handler is: the wrappers are taken apart once, only what the patterns bind is
/// cloned for each attempt.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn add_note(
    #[acquire] conn: &mut PgConnection,
    Path((author, mut tag)): Path<(String, String)>,
    Json(note): Json<NewNote>,
    server: &PgServer,
    attempts: &AtomicU32,
) -> Result<i64, sqlx::Error> {
    tag.push('!');
    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
        let pid = backend_pid(conn).await;
        server.terminate_backend(pid).await;
    }
    sqlx::query_scalar("INSERT INTO notes (author, tag, body) VALUES ($1, $2, $3) RETURNING id")
        .bind(author)
        .bind(tag)
        .bind(note.body)
        .fetch_one(&mut *conn)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_patterns_are_taken_apart_once_and_their_fields_cloned_per_attempt() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE notes (id bigserial PRIMARY KEY, author text NOT NULL, \
             tag text NOT NULL, body text NOT NULL)",
        )
        .await;
    let pool: PgPool = server.pool(4).await;
    let attempts = AtomicU32::new(0);

    add_note(
        &pool,
        Path(("ada".to_owned(), "db".to_owned())),
        Json(NewNote {
            body: "retried".to_owned(),
        }),
        &server,
        &attempts,
    )
    .await
    .expect("the retry inserts");

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one terminated backend, one retry"
    );
    let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT author, tag, body FROM notes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [("ada".to_owned(), "db!".to_owned(), "retried".to_owned())],
        "each attempt started from the arguments as given: one `!`, not two"
    );
}
