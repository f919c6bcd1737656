//! `#[db_retry]` on the methods of an `#[async_trait]` impl, called through `dyn Trait` against a
//! real PostgreSQL: terminated backends are retried on a fresh connection, a real serialization
//! failure retries the whole transaction, and a permanent error runs once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use db_retry::db_retry;
use db_retry_test_kit::pg::{backend_pid, PgServer};
use sqlx::{Connection, PgConnection, PgPool};

#[async_trait]
trait Doctors: Send + Sync {
    /// The backend of each of the first `kill_first` attempts is terminated before the query.
    async fn on_call(&self, conn: &PgPool, kill_first: u32) -> Result<i64, sqlx::Error>;
    /// Takes doctor 1 off call if both are on call, under SERIALIZABLE; on the first attempt a
    /// concurrent transaction takes doctor 2 off call between the read and the write.
    async fn take_one_off_call(&self, tx: &PgPool) -> Result<(), sqlx::Error>;
    async fn add(&self, id: i32) -> Result<(), sqlx::Error>;
}

struct PgDoctors {
    server: Arc<PgServer>,
    pool: PgPool,
    attempts: AtomicU32,
    pids: std::sync::Mutex<Vec<i32>>,
}

#[async_trait]
impl Doctors for PgDoctors {
    #[db_retry(max = 3, base = 1ms, jitter = none)]
    async fn on_call(
        &self,
        #[acquire] conn: &mut PgConnection,
        kill_first: u32,
    ) -> Result<i64, sqlx::Error> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        let pid = backend_pid(conn).await;
        self.pids.lock().unwrap().push(pid);
        if attempt < kill_first {
            self.server.terminate_backend(pid).await;
        }
        sqlx::query_scalar("SELECT count(*) FROM doctors WHERE on_call")
            .fetch_one(&mut *conn)
            .await
    }

    #[db_retry(max = 3, base = 1ms, jitter = none, on = contention)]
    async fn take_one_off_call(
        &self,
        #[transaction] tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .execute(&mut *tx)
            .await?;
        let on_call: i64 = sqlx::query_scalar("SELECT count(*) FROM doctors WHERE on_call")
            .fetch_one(&mut *tx)
            .await?;
        if attempt == 1 {
            let mut other: PgConnection = self.server.admin().await;
            let mut conflicting = other.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .execute(&mut *conflicting)
                .await?;
            sqlx::query("SELECT count(*) FROM doctors WHERE on_call")
                .execute(&mut *conflicting)
                .await?;
            sqlx::query("UPDATE doctors SET on_call = false WHERE id = 2")
                .execute(&mut *conflicting)
                .await?;
            conflicting.commit().await?;
        }
        if on_call >= 2 {
            sqlx::query("UPDATE doctors SET on_call = false WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    #[db_retry(max = 3, base = 1ms)]
    async fn add(&self, id: i32) -> Result<(), sqlx::Error> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        sqlx::query("INSERT INTO doctors VALUES ($1, true)")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn doctors() -> (Arc<PgDoctors>, Arc<dyn Doctors>) {
    let server = Arc::new(PgServer::start());
    server
        .exec_admin(
            "CREATE TABLE doctors (id int PRIMARY KEY, on_call bool NOT NULL); \
             INSERT INTO doctors VALUES (1, true), (2, true)",
        )
        .await;
    let pool: PgPool = server.pool(4).await;
    let doctors = Arc::new(PgDoctors {
        server,
        pool,
        attempts: AtomicU32::new(0),
        pids: std::sync::Mutex::new(Vec::new()),
    });
    let shared: Arc<dyn Doctors> = doctors.clone();
    (doctors, shared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_retried_on_fresh_connections_through_dyn_trait() {
    let (doctors, shared) = doctors().await;
    let pool = doctors.pool.clone();

    let on_call = tokio::spawn(async move { shared.on_call(&pool, 2).await })
        .await
        .expect("the call's task")
        .expect("the third attempt succeeds");

    assert_eq!(on_call, 2);
    assert_eq!(
        doctors.attempts.load(Ordering::SeqCst),
        3,
        "two terminated, one that worked"
    );
    let pids = doctors.pids.lock().unwrap().clone();
    assert_eq!(pids.len(), 3);
    assert!(
        pids[1] != pids[0] && pids[2] != pids[1],
        "every retry ran on a fresh backend: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_retries_the_whole_transaction_through_dyn_trait() {
    let (doctors, shared) = doctors().await;

    shared
        .take_one_off_call(&doctors.pool)
        .await
        .expect("the retry commits");

    assert_eq!(
        doctors.attempts.load(Ordering::SeqCst),
        2,
        "one conflict, one retry"
    );
    let on_call: Vec<i32> = sqlx::query_scalar("SELECT id FROM doctors WHERE on_call ORDER BY id")
        .fetch_all(&doctors.pool)
        .await
        .unwrap();
    assert_eq!(
        on_call,
        vec![1],
        "the retry saw the other transaction's commit and left doctor 1 on call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_runs_once_through_dyn_trait() {
    let (doctors, shared) = doctors().await;

    let error = shared.add(1).await.expect_err("doctor 1 exists");

    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505")
    );
    assert_eq!(
        doctors.attempts.load(Ordering::SeqCst),
        1,
        "a unique violation is not retried"
    );
}
