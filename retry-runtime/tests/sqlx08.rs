//! sqlx 0.8's errors are classified exactly as sqlx 0.9's, through every path a user's error
//! takes: the error itself, a driver's database error, `thiserror` and `anyhow` wrappers, boxed
//! trait objects, and a real SQLite busy error. (The other test files use sqlx 0.9; the real
//! PostgreSQL cases for both versions are in the root package's `tests/sqlx_versions.rs`.)

use std::error::Error as StdError;
use std::io;

use db_retry_runtime::{classify_database, classify_sqlx, Classify, ErrorClass};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use sqlx08 as sqlx;

#[derive(Debug, thiserror::Error)]
enum RepoError {
    #[error("the repository failed")]
    Db(#[from] sqlx::Error),
}

#[test]
fn every_sqlx_error_variant_with_a_fixed_class_matches_sqlx_09() {
    let pairs = [
        (sqlx::Error::PoolTimedOut, ::sqlx::Error::PoolTimedOut),
        (sqlx::Error::PoolClosed, ::sqlx::Error::PoolClosed),
        (sqlx::Error::WorkerCrashed, ::sqlx::Error::WorkerCrashed),
        (sqlx::Error::RowNotFound, ::sqlx::Error::RowNotFound),
        (
            sqlx::Error::Protocol("out of step".into()),
            ::sqlx::Error::Protocol("out of step".into()),
        ),
        (
            sqlx::Error::Io(io::ErrorKind::ConnectionRefused.into()),
            ::sqlx::Error::Io(io::ErrorKind::ConnectionRefused.into()),
        ),
        (
            sqlx::Error::Io(io::ErrorKind::UnexpectedEof.into()),
            ::sqlx::Error::Io(io::ErrorKind::UnexpectedEof.into()),
        ),
    ];
    for (old, new) in &pairs {
        assert_eq!(classify_sqlx(old), classify_sqlx(new), "{old}");
        assert_eq!(old.classify(), new.classify(), "{old}");
    }
    assert_eq!(classify_sqlx(&pairs[0].0), ErrorClass::Connect);
    assert_eq!(classify_sqlx(&pairs[4].0), ErrorClass::ConnectionLost);
    assert_eq!(classify_sqlx(&pairs[3].0), ErrorClass::Permanent);
}

#[test]
fn thiserror_enum_around_a_sqlx_08_error_is_classified_by_it() {
    assert_eq!(
        RepoError::from(sqlx::Error::PoolTimedOut).classify(),
        ErrorClass::Connect
    );
    assert_eq!(
        RepoError::from(sqlx::Error::RowNotFound).classify(),
        ErrorClass::Permanent
    );
}

#[test]
fn anyhow_and_boxed_sqlx_08_errors_are_classified() {
    let error = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("loading the user");
    assert_eq!(error.classify(), ErrorClass::Connect);
    let boxed: Box<dyn StdError + Send + Sync> =
        Box::new(sqlx::Error::Io(io::ErrorKind::BrokenPipe.into()));
    assert_eq!(boxed.classify(), ErrorClass::ConnectionLost);
}

/// Two connections to one file; one holds a write lock, the other has no busy timeout, so its
/// write fails at once with SQLITE_BUSY (5).
#[tokio::test]
async fn real_sqlite_busy_from_sqlx_08_is_contention_everywhere_it_can_be_found() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("busy.db"))
        .create_if_missing(true)
        .busy_timeout(std::time::Duration::ZERO);
    let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut other = SqliteConnection::connect_with(&options).await.unwrap();
    let error = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut other)
        .await
        .expect_err("the file is locked");

    let db = error.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("5"), "{error}");
    assert_eq!(classify_database(db), ErrorClass::Contention);
    assert_eq!(classify_sqlx(&error), ErrorClass::Contention);
    assert_eq!(error.classify(), ErrorClass::Contention);
    assert_eq!(RepoError::from(error).classify(), ErrorClass::Contention);
}
