//! `#[transaction(...)]` options against a real PostgreSQL: each attempt's transaction has the
//! isolation level and access mode asked for; a write refused in the call's own read-only
//! transaction is not retried as if the server had failed over; and with `verify_commit` a
//! transaction the server aborted (an error the body swallowed) is never reported as `Ok`.

use std::sync::atomic::{AtomicU32, Ordering};

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use sqlx::{PgConnection, PgPool};

async fn settings(tx: &mut PgConnection) -> Result<(String, String, String), sqlx::Error> {
    sqlx::query_as(
        "SELECT current_setting('transaction_isolation'), \
                current_setting('transaction_read_only'), \
                current_setting('transaction_deferrable')",
    )
    .fetch_one(tx)
    .await
}

#[db_retry(max = 1)]
async fn serializable(
    #[transaction(isolation = serializable)] tx: &mut PgConnection,
) -> Result<(String, String, String), sqlx::Error> {
    settings(tx).await
}

#[db_retry(max = 1)]
async fn repeatable_read_only(
    #[transaction(isolation = repeatable_read, read_only)] tx: &mut PgConnection,
) -> Result<(String, String, String), sqlx::Error> {
    settings(tx).await
}

#[db_retry(max = 1)]
async fn read_committed(
    #[transaction(isolation = read_committed)] tx: &mut PgConnection,
) -> Result<(String, String, String), sqlx::Error> {
    settings(tx).await
}

#[db_retry(max = 1)]
async fn safe_snapshot(
    #[transaction(isolation = serializable, read_only, deferrable)] tx: &mut PgConnection,
) -> Result<(String, String, String), sqlx::Error> {
    settings(tx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transaction_begins_with_the_options_asked_for() {
    // A server default that differs from the levels asked for below but one.
    let server = PgServer::builder()
        .setting("default_transaction_isolation", "repeatable read")
        .start();
    let pool: PgPool = server.pool(2).await;
    let owned = |(a, b, c): (&str, &str, &str)| (a.to_owned(), b.to_owned(), c.to_owned());

    assert_eq!(
        serializable(&pool).await.unwrap(),
        owned(("serializable", "off", "off"))
    );
    assert_eq!(
        repeatable_read_only(&pool).await.unwrap(),
        owned(("repeatable read", "on", "off"))
    );
    assert_eq!(
        read_committed(&pool).await.unwrap(),
        owned(("read committed", "off", "off"))
    );
    assert_eq!(
        safe_snapshot(&pool).await.unwrap(),
        owned(("serializable", "on", "on"))
    );
}

#[db_retry(max = 3, base = 1ms)]
async fn write_in_read_only(
    #[transaction(read_only)] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO notes (body) VALUES ('x')")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Declares its own transaction read-only in the body, which the attribute cannot see.
#[db_retry(max = 3, base = 1ms)]
async fn write_after_set_read_only(
    #[transaction] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO notes (body) VALUES ('x')")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_the_calls_own_read_only_transaction_is_not_a_failover() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        .await;
    let pool: PgPool = server.pool(2).await;

    // Declared in the attribute: known at once.
    let attempts = AtomicU32::new(0);
    let error = write_in_read_only(&pool, &attempts).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("25006"));
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "permanent, not retried");

    // Declared in the body: the message is a failed-over primary's too, so the server is asked
    // (`pg_is_in_recovery()` is false) and the one attempt already under way is the last.
    let attempts = AtomicU32::new(0);
    let error = write_after_set_read_only(&pool, &attempts)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("25006"));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one attempt to ask the server, none after its answer (max = 3 would allow 4)"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
}

/// Swallows a unique violation, which aborts the transaction on the server.
#[db_retry(max = 3, base = 1ms)]
async fn swallowing_verified(
    #[transaction(verify_commit)] tx: &mut PgConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (email) VALUES ('a@example.com')")
        .execute(&mut *tx)
        .await?;
    let _ = sqlx::query("INSERT INTO users (email) VALUES ('taken@example.com')")
        .execute(&mut *tx)
        .await;
    Ok(())
}

/// The same body without `verify_commit`.
#[db_retry(max = 3, base = 1ms)]
async fn swallowing(#[transaction] tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (email) VALUES ('a@example.com')")
        .execute(&mut *tx)
        .await?;
    let _ = sqlx::query("INSERT INTO users (email) VALUES ('taken@example.com')")
        .execute(&mut *tx)
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verify_commit_an_aborted_transaction_is_never_ok() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE users (email text PRIMARY KEY);
             INSERT INTO users VALUES ('taken@example.com');",
        )
        .await;
    let pool: PgPool = server.pool(2).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    let error = swallowing_verified(&pool)
        .await
        .expect_err("the server aborted the transaction");
    assert_eq!(sqlstate(&error).as_deref(), Some("25P02"), "{error}");
    assert_eq!(count().await, 1, "nothing was written");

    // The control: sqlx reports the ROLLBACK that COMMIT turned into as success.
    swallowing(&pool)
        .await
        .expect("without verify_commit the lost write looks like success");
    assert_eq!(count().await, 1, "and still nothing was written");
}
