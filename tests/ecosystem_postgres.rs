//! SeaORM, tokio-postgres and deadpool-postgres against a real PostgreSQL: their errors are
//! classified by what they wrap, and `#[db_retry]` functions written with them survive
//! backends terminated under load and retry real serialization conflicts.

use db_retry_test_kit as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use db_retry::{db_retry, Classify, ErrorClass};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ConnAcquireErr, ConnectOptions, Database, DatabaseConnection, IsolationLevel, RuntimeErr, Set,
    TransactionTrait,
};
use support::pg::PgServer;

mod item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub on_call: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Eight readers make 400 reads each of items 1..=100 through `read` (which counts its attempts
/// in `attempts`) while one backend, chosen at random, is terminated every 2 ms; asserts that no
/// call failed and that the faults were real (backends killed, calls retried), and prints the
/// summary line. Killing every backend each round would let a slow machine starve a call: when
/// connecting takes longer than a round, no connection lives long enough to answer, and 30
/// attempts run out however correct the retrying is.
async fn reads_under_terminations<F, Fut>(
    server: Arc<PgServer>,
    scenario: &str,
    attempts: Arc<AtomicU32>,
    read: F,
) where
    F: Fn(i32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let outcome = server
        .calls_while_killing(Duration::from_millis(2), Some(1), 8, 400, move |n| {
            read((n % 100 + 1) as i32)
        })
        .await;
    let retries = attempts.load(Ordering::Relaxed) - outcome.calls;
    println!(
        "{scenario}: calls={} retries={retries} failures={} killed={} elapsed={:.2}s",
        outcome.calls,
        outcome.failures.len(),
        outcome.killed,
        outcome.elapsed.as_secs_f64()
    );
    assert!(
        outcome.failures.is_empty(),
        "failed calls: {:?}",
        outcome.failures
    );
    assert!(
        outcome.killed > 0 && retries > 0,
        "backends were killed ({}) and calls retried ({retries})",
        outcome.killed
    );
}

async fn seed(server: &PgServer) {
    let mut sql = String::from(
        "CREATE TABLE items (id int PRIMARY KEY, on_call bool NOT NULL); INSERT INTO items VALUES ",
    );
    let rows: Vec<String> = (1..=100).map(|id| format!("({id}, true)")).collect();
    sql.push_str(&rows.join(", "));
    server.exec_admin(&sql).await;
}

// --- SeaORM ------------------------------------------------------------------------------------

/// Without the pool's ping before each acquire, as services tuned for latency run it: a
/// terminated backend's connection then reaches the query and fails there.
async fn sea_orm_connection(server: &PgServer, max: u32) -> DatabaseConnection {
    let mut options = ConnectOptions::new(server.url());
    options
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(2))
        .test_before_acquire(false)
        .sqlx_logging(false);
    Database::connect(options).await.expect("SeaORM connects")
}

#[db_retry(max = 30, base = 1ms, cap = 50ms, deadline = 10s)]
async fn find_item(
    db: &DatabaseConnection,
    id: i32,
    attempts: &AtomicU32,
) -> Result<Option<item::Model>, DbErr> {
    attempts.fetch_add(1, Ordering::Relaxed);
    item::Entity::find_by_id(id).one(db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sea_orm_reads_survive_terminated_backends() {
    let server = Arc::new(PgServer::start());
    seed(&server).await;
    let db = sea_orm_connection(&server, 8).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    reads_under_terminations(server, "sea_orm_terminated", attempts, move |id| {
        let (db, attempts) = (db.clone(), counted.clone());
        async move {
            match find_item(&db, id, &attempts).await {
                Ok(Some(found)) if found.id == id => Ok(()),
                Ok(other) => Err(format!("item {id}: {other:?}")),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await;
}

/// Write skew under SERIALIZABLE through SeaORM: on the first attempt another transaction takes
/// item 2 off call and commits between this one's read and its write.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn take_off_call(db: &DatabaseConnection, attempts: &AtomicU32) -> Result<(), DbErr> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    let tx = db
        .begin_with_config(Some(IsolationLevel::Serializable), None)
        .await?;
    let on_call = item::Entity::find()
        .filter(item::Column::OnCall.eq(true))
        .filter(item::Column::Id.is_in([1, 2]))
        .count(&tx)
        .await?;
    if attempt == 1 {
        assert_eq!(on_call, 2);
        let other = db
            .begin_with_config(Some(IsolationLevel::Serializable), None)
            .await?;
        item::Entity::find()
            .filter(item::Column::OnCall.eq(true))
            .filter(item::Column::Id.is_in([1, 2]))
            .count(&other)
            .await?;
        item::ActiveModel {
            id: Set(2),
            on_call: Set(false),
        }
        .update(&other)
        .await?;
        other.commit().await?;
    }
    item::ActiveModel {
        id: Set(1),
        on_call: Set(false),
    }
    .update(&tx)
    .await?;
    tx.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sea_orm_serialization_failure_is_retried() {
    let server = PgServer::start();
    seed(&server).await;
    let db = sea_orm_connection(&server, 4).await;
    let attempts = AtomicU32::new(0);

    take_off_call(&db, &attempts)
        .await
        .expect("the retry commits");

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one conflict, one retry"
    );
    let off = item::Entity::find()
        .filter(item::Column::OnCall.eq(false))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(off, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sea_orm_errors_are_classified_by_what_they_wrap() {
    let server = PgServer::start();
    seed(&server).await;
    let db = sea_orm_connection(&server, 2).await;

    let duplicate = item::ActiveModel {
        id: Set(1),
        on_call: Set(true),
    }
    .insert(&db)
    .await
    .expect_err("item 1 exists");
    assert_eq!(duplicate.classify(), ErrorClass::Permanent, "{duplicate}");

    let conflict = db
        .execute_unprepared("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END $$")
        .await
        .expect_err("raised");
    assert_eq!(conflict.classify(), ErrorClass::Contention, "{conflict}");

    assert_eq!(
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout).classify(),
        ErrorClass::Connect
    );
    assert_eq!(
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed).classify(),
        ErrorClass::Permanent
    );
    assert_eq!(
        DbErr::Exec(RuntimeErr::Internal("x".into())).classify(),
        ErrorClass::Permanent
    );
    assert_eq!(
        DbErr::RecordNotFound("item".into()).classify(),
        ErrorClass::Permanent
    );

    server.stop_fast();
    let mut options = ConnectOptions::new(server.url());
    options.acquire_timeout(Duration::from_millis(300));
    let down = Database::connect(options)
        .await
        .expect_err("the server is down");
    assert_eq!(down.classify(), ErrorClass::Connect, "{down}");
}

// --- tokio-postgres through deadpool-postgres ---------------------------------------------------

#[derive(Debug, thiserror::Error)]
enum RepoError {
    #[error("no connection from the pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("query failed")]
    Query(#[from] tokio_postgres::Error),
}

fn deadpool(server: &PgServer, max: usize) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = server.url().parse().unwrap();
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(max)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(2)))
        .create_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap()
}

#[db_retry(max = 30, base = 1ms, cap = 50ms, deadline = 10s)]
async fn read_on_call(
    pool: &deadpool_postgres::Pool,
    id: i32,
    attempts: &AtomicU32,
) -> Result<bool, RepoError> {
    attempts.fetch_add(1, Ordering::Relaxed);
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT on_call FROM items WHERE id = $1", &[&id])
        .await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_reads_survive_terminated_backends() {
    let server = Arc::new(PgServer::start());
    seed(&server).await;
    let pool = deadpool(&server, 8);
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    reads_under_terminations(server, "deadpool_terminated", attempts, move |id| {
        let (pool, attempts) = (pool.clone(), counted.clone());
        async move {
            match read_on_call(&pool, id, &attempts).await {
                Ok(_) => Ok(()),
                Err(error) => Err(format!("{error}: {:?}", std::error::Error::source(&error))),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_errors_are_classified_by_sqlstate_and_connection_state() {
    let server = PgServer::start();
    seed(&server).await;
    let pool = deadpool(&server, 2);
    let client = pool.get().await.unwrap();

    let duplicate = client
        .execute("INSERT INTO items VALUES (1, true)", &[])
        .await
        .expect_err("item 1 exists");
    assert_eq!(
        duplicate.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    assert_eq!(duplicate.classify(), ErrorClass::Permanent);

    let deadlock = client
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$")
        .await
        .expect_err("raised");
    assert_eq!(deadlock.classify(), ErrorClass::Contention);
    // `#[error(transparent)]` hands out the inner error's source: the bare `DbError`.
    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] tokio_postgres::Error);
    assert_eq!(Transparent(deadlock).classify(), ErrorClass::Contention);

    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    server.terminate_backend(pid).await;
    let terminated = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("backend gone");
    assert_eq!(
        terminated.classify(),
        ErrorClass::ConnectionLost,
        "{terminated}"
    );
    let after = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("connection closed");
    assert!(after.is_closed(), "{after}");
    assert_eq!(after.classify(), ErrorClass::ConnectionLost);

    server.stop_fast();
    let refused = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("the server is down");
    assert_eq!(refused.classify(), ErrorClass::Connect, "{refused}");
    let pool = deadpool(&server, 1);
    let from_pool = pool.get().await.expect_err("the server is down");
    assert_eq!(RepoError::from(from_pool).classify(), ErrorClass::Connect);
}
