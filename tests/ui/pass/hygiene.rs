// The rewrite's own locals (the retrier, the delay, the error, the connection, the policy) can't
// collide with the user's names, in either direction.
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

static POLICY: &str = "user's own";

#[db_retry]
#[allow(clippy::too_many_arguments)]
async fn user_names(
    pool: &PgPool,
    retrier: i64,
    delay: u64,
    error: String,
    value: Vec<u8>,
    verdict: bool,
    connection: &str,
    fake_return: (),
    (attempt, policy): (u8, u8),
    (class, shown, decided_by): (u8, u8, u8),
) -> Result<String, sqlx::Error> {
    let _ = (
        retrier,
        delay,
        &error,
        &value,
        verdict,
        connection,
        fake_return,
        POLICY,
        attempt,
        policy,
        class,
        shown,
        decided_by,
    );
    sqlx::query_scalar("SELECT $1")
        .bind(error)
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn user_names_in_transaction(
    #[transaction] tx: &mut PgConnection,
    transaction: i64,
    phase: i64,
) -> Result<i64, sqlx::Error> {
    let connection = 1;
    let value: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *tx).await?;
    Ok(value + transaction + phase + connection)
}

fn main() {
    let _ = user_names;
    let _ = user_names_in_transaction;
}
