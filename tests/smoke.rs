use db_retry::db_retry;
use sqlx::{SqliteConnection, SqlitePool};
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

#[db_retry(max = 2, base = 1ms)]
async fn plain(pool: &SqlitePool, id: i64, name: String) -> Result<i64, sqlx::Error> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = name.len();
    sqlx::query_scalar("SELECT ?")
        .bind(id)
        .fetch_one(pool)
        .await
}

#[db_retry(max = 2, base = 1ms)]
async fn acquired(#[acquire] conn: &mut SqliteConnection, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
}

#[db_retry(max = 2, base = 1ms)]
async fn tx(
    #[transaction] tx: &mut SqliteConnection,
    (a, b): (i64, i64),
) -> Result<i64, sqlx::Error> {
    let x: i64 = sqlx::query_scalar("SELECT ?")
        .bind(a)
        .fetch_one(&mut *tx)
        .await?;
    if x < 0 {
        return Ok(0);
    }
    Ok(x + b)
}

#[tokio::test]
async fn smoke() {
    let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
    assert_eq!(plain(&pool, 7, "x".into()).await.unwrap(), 7);
    assert_eq!(acquired(&pool, 8).await.unwrap(), 8);
    assert_eq!(tx(&pool, (1, 2)).await.unwrap(), 3);
    fn assert_send<T: Send>(_: T) {}
    assert_send(plain(&pool, 1, String::new()));
    assert_send(tx(&pool, (1, 2)));
}
