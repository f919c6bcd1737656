//! Every error code the contract names, with the class it must get; plus real SQLite errors and
//! the properties of `ErrorClass` and `RetryOn`.

use std::fmt;
use std::io;
use std::time::Duration;

use db_retry_runtime::{
    classify_error, classify_io, classify_mysql, classify_postgres, classify_sqlite, classify_sqlx,
    Classify, ErrorClass, RetryOn,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

mod common;

use common::OtherDriverError;
use ErrorClass::{Connect, ConnectionLost, Contention, Permanent, Unavailable};

/// Check every row, then fail once listing all the rows that got the wrong class.
fn assert_table<R: fmt::Debug>(
    backend: &str,
    rows: &[(R, ErrorClass)],
    classify: impl Fn(&R) -> ErrorClass,
) {
    let mismatches: Vec<String> = rows
        .iter()
        .filter_map(|(row, expected)| {
            let actual = classify(row);
            (actual != *expected)
                .then(|| format!("  {row:?}: expected {expected:?}, got {actual:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{backend}: {} of {} rows misclassified:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
}

#[test]
fn postgres_sqlstates_get_their_documented_class() {
    const PLAIN: &str = "some server message";
    let rows: &[((&str, &str), ErrorClass)] = &[
        (("08000", PLAIN), ConnectionLost),
        (("08001", PLAIN), Connect),
        (("08003", PLAIN), ConnectionLost),
        (("08004", PLAIN), Connect),
        (("08006", PLAIN), ConnectionLost),
        (("08007", PLAIN), ConnectionLost),
        (("08P01", "invalid message format"), Permanent),
        (
            (
                "08P01",
                "bind message supplies 1 parameters, but prepared statement \"\" requires 2",
            ),
            Permanent,
        ),
        (
            ("08P01", "no more connections allowed (max_client_conn)"),
            Connect,
        ),
        (("08P01", "query_wait_timeout"), Connect),
        (("08P01", "server conn crashed?"), ConnectionLost),
        // PgBouncer without `ignore_startup_parameters = extra_float_digits`: the setup.
        (
            ("08P01", "unsupported startup parameter: extra_float_digits"),
            Permanent,
        ),
        // PgBouncer in transaction mode losing sqlx's statements: the setup.
        (
            ("42P05", "prepared statement \"sqlx_s_1\" already exists"),
            Permanent,
        ),
        (
            ("26000", "prepared statement \"sqlx_s_2\" does not exist"),
            Permanent,
        ),
        (
            ("26000", "unnamed prepared statement does not exist"),
            Permanent,
        ),
        // PgBouncer turning clients away while its logins to the server fail: nothing ran.
        (
            (
                "08P01",
                "server login has been failing, try again later (server_login_retry)",
            ),
            Connect,
        ),
        (
            (
                "08P01",
                "server login has been failing, cached error: password authentication failed \
                 for user \"app\" (server_login_retry)",
            ),
            Connect,
        ),
        (
            ("25006", "cannot execute INSERT in a read-only transaction"),
            Unavailable,
        ),
        (
            (
                "25P03",
                "terminating connection due to idle-in-transaction timeout",
            ),
            ConnectionLost,
        ),
        (
            (
                "40001",
                "could not serialize access due to read/write dependencies",
            ),
            Contention,
        ),
        (("40P01", "deadlock detected"), Contention),
        (("40003", PLAIN), ConnectionLost),
        (("53000", PLAIN), Unavailable),
        (
            ("53100", "could not extend file: No space left on device"),
            Unavailable,
        ),
        (("53200", "out of memory"), Unavailable),
        (("53300", "sorry, too many clients already"), Connect),
        (("53400", PLAIN), Unavailable),
        (
            ("55P03", "could not obtain lock on row in relation"),
            Contention,
        ),
        (("55006", "object is in use"), Contention),
        (
            (
                "57P01",
                "terminating connection due to administrator command",
            ),
            ConnectionLost,
        ),
        (
            (
                "57P02",
                "terminating connection because of crash of another server process",
            ),
            ConnectionLost,
        ),
        (("57P03", "the database system is starting up"), Connect),
        (
            (
                "57P05",
                "terminating connection due to idle-session timeout",
            ),
            ConnectionLost,
        ),
        (("58000", PLAIN), Unavailable),
        (("58030", "could not read block"), Unavailable),
        (
            ("57014", "canceling statement due to statement timeout"),
            Permanent,
        ),
        (
            ("57014", "canceling statement due to user request"),
            Permanent,
        ),
        (
            ("57014", "canceling statement due to conflict with recovery"),
            Permanent,
        ),
        (
            ("23505", "duplicate key value violates unique constraint"),
            Permanent,
        ),
        (
            ("23503", "insert or update violates foreign key constraint"),
            Permanent,
        ),
        (("23514", "new row violates check constraint"), Permanent),
        (("42601", "syntax error at or near"), Permanent),
        (("42P01", "relation \"nope\" does not exist"), Permanent),
        (
            ("28P01", "password authentication failed for user"),
            Permanent,
        ),
        (("22012", "division by zero"), Permanent),
        // A cached plan that no longer fits the table: a fresh connection succeeds.
        (
            ("0A000", "cached plan must not change result type"),
            Unavailable,
        ),
        (("0A000", "DISCARD statement is not supported"), Permanent),
        // PgBouncer in transaction mode lost the session's prepared statement: not retried
        // (the connection is thrown away where db-retry holds it).
        (
            ("26000", "prepared statement \"sqlx_s_1\" does not exist"),
            Permanent,
        ),
    ];
    assert_table("PostgreSQL", rows, |(code, message)| {
        classify_postgres(code, message)
    });
}

#[test]
fn mysql_error_numbers_get_their_documented_class() {
    let rows: &[((u16, Option<&str>), ErrorClass)] = &[
        ((1040, None), Connect),
        ((1053, Some("08S01")), ConnectionLost),
        ((1205, Some("HY000")), Contention),
        ((1213, Some("40001")), Contention),
        ((1317, Some("70100")), Permanent),
        ((1927, Some("70100")), ConnectionLost),
        ((2002, Some("HY000")), Connect),
        ((2003, Some("HY000")), Connect),
        ((2006, Some("HY000")), ConnectionLost),
        ((2013, Some("HY000")), ConnectionLost),
        ((3572, Some("HY000")), Contention),
        ((4031, Some("HY000")), ConnectionLost),
        ((1836, Some("HY000")), Unavailable),
        // The session's own START TRANSACTION READ ONLY: the same on every attempt.
        ((1792, Some("25006")), Permanent),
        // MariaDB's snapshot isolation (ER_CHECKREAD) and group replication's rollback at
        // commit: the transaction was rolled back.
        ((1020, Some("HY000")), Contention),
        ((3101, Some("40000")), Contention),
        ((9999, Some("40000")), Contention),
        ((3024, Some("HY000")), Permanent),
        ((1062, Some("23000")), Permanent),
        ((1153, Some("08S01")), Permanent),
        ((1043, Some("08S01")), Permanent),
        ((1047, Some("08S01")), Permanent),
        ((9999, Some("08S01")), ConnectionLost),
        ((1158, Some("08S01")), ConnectionLost),
        ((1159, Some("08S01")), ConnectionLost),
        ((1160, Some("08S01")), ConnectionLost),
        ((1161, Some("08S01")), ConnectionLost),
        ((1203, Some("42000")), Connect),
        // A number the table does not list, but whose SQLSTATE says the transaction rolled back.
        ((9999, Some("40001")), Contention),
        ((9999, Some("HY000")), Permanent),
        ((9999, None), Permanent),
    ];
    assert_table("MySQL/MariaDB", rows, |(number, sqlstate)| {
        classify_mysql(*number, *sqlstate, "")
    });
}

#[test]
fn mysql_1290_is_unavailable_only_on_a_read_only_server() {
    let read_only = "The MariaDB server is running with the --read-only option so it cannot \
                     execute this statement";
    let file_priv = "The MariaDB server is running with the --secure-file-priv option so it \
                     cannot execute this statement";
    assert_eq!(classify_mysql(1290, Some("HY000"), read_only), Unavailable);
    assert_eq!(classify_mysql(1290, Some("HY000"), file_priv), Permanent);
}

#[test]
fn mysql_1047_is_unavailable_only_from_a_galera_node_out_of_sync() {
    let wsrep = "WSREP has not yet prepared node for application use";
    assert_eq!(classify_mysql(1047, Some("08S01"), wsrep), Unavailable);
    assert_eq!(
        classify_mysql(1047, Some("08S01"), "Unknown command"),
        Permanent
    );
}

#[test]
fn sqlite_extended_codes_get_their_documented_class() {
    let rows: &[(i32, ErrorClass)] = &[
        (5, Contention),   // SQLITE_BUSY
        (261, Contention), // SQLITE_BUSY_RECOVERY
        (517, Contention), // SQLITE_BUSY_SNAPSHOT
        (773, Contention), // SQLITE_BUSY_TIMEOUT
        (262, Contention), // SQLITE_LOCKED_SHAREDCACHE: another connection of the cache
        (6, Permanent),    // SQLITE_LOCKED: a conflict within the same connection
        (518, Permanent),  // SQLITE_LOCKED_VTAB
        (19, Permanent),   // SQLITE_CONSTRAINT
        (2067, Permanent), // SQLITE_CONSTRAINT_UNIQUE
        (1, Permanent),    // SQLITE_ERROR
        (14, Permanent),   // SQLITE_CANTOPEN
    ];
    assert_table("SQLite", rows, |code| classify_sqlite(*code));
}

#[test]
fn io_error_kinds_get_their_documented_class() {
    use io::ErrorKind::*;
    let rows: &[(io::ErrorKind, ErrorClass)] = &[
        (ConnectionRefused, Connect),
        // A route can vanish under an open connection too: only the phase can tell (the driver
        // counts them as connect while getting the connection).
        (AddrNotAvailable, ConnectionLost),
        (HostUnreachable, ConnectionLost),
        (NetworkUnreachable, ConnectionLost),
        (NotFound, ConnectionLost),
        (ConnectionReset, ConnectionLost),
        (ConnectionAborted, ConnectionLost),
        (NotConnected, ConnectionLost),
        (BrokenPipe, ConnectionLost),
        (UnexpectedEof, ConnectionLost),
        (TimedOut, ConnectionLost),
        (PermissionDenied, Permanent),
        (InvalidData, Permanent),
    ];
    assert_table("io::ErrorKind", rows, |kind| {
        let bare = classify_io(&io::Error::from(*kind));
        let with_message = classify_io(&io::Error::new(*kind, "with a message"));
        assert_eq!(
            bare, with_message,
            "{kind:?}: a message must not change the class"
        );
        bare
    });
}

fn boxed(message: &str) -> Box<dyn std::error::Error + Send + Sync> {
    message.into()
}

#[test]
fn every_constructible_sqlx_error_variant_gets_its_documented_class() {
    let rows: Vec<(sqlx::Error, ErrorClass)> = vec![
        (
            sqlx::Error::Io(io::ErrorKind::ConnectionRefused.into()),
            Connect,
        ),
        (
            sqlx::Error::Io(io::ErrorKind::UnexpectedEof.into()),
            ConnectionLost,
        ),
        (
            sqlx::Error::Io(io::ErrorKind::PermissionDenied.into()),
            Permanent,
        ),
        (
            sqlx::Error::Tls(boxed("invalid peer certificate: UnknownIssuer")),
            Permanent,
        ),
        (
            sqlx::Error::Tls(boxed("server does not support TLS")),
            Permanent,
        ),
        // The connection dropped during the handshake.
        (
            sqlx::Error::Tls(Box::new(io::Error::from(io::ErrorKind::ConnectionReset))),
            ConnectionLost,
        ),
        (sqlx::Error::PoolTimedOut, Connect),
        (sqlx::Error::PoolClosed, Permanent),
        (sqlx::Error::WorkerCrashed, Permanent),
        (
            sqlx::Error::Protocol("unexpected message 'Z'".into()),
            ConnectionLost,
        ),
        // Raised before anything was sent: the same call fails the same way again.
        (
            sqlx::Error::Protocol("param_types.len() too large for binary protocol: 70000".into()),
            Permanent,
        ),
        (
            sqlx::Error::Protocol("too many parameter format codes (70000)".into()),
            Permanent,
        ),
        (
            sqlx::Error::Protocol("unsupported authentication method: Kerberos".into()),
            Permanent,
        ),
        (sqlx::Error::RowNotFound, Permanent),
        (sqlx::Error::Decode(boxed("bad utf-8")), Permanent),
        (sqlx::Error::Encode(boxed("too long")), Permanent),
        (sqlx::Error::Configuration(boxed("bad url")), Permanent),
        (sqlx::Error::ColumnNotFound("name".into()), Permanent),
        (
            sqlx::Error::TypeNotFound {
                type_name: "mood".into(),
            },
            Permanent,
        ),
        (
            sqlx::Error::ColumnIndexOutOfBounds { index: 3, len: 2 },
            Permanent,
        ),
        (
            sqlx::Error::ColumnDecode {
                index: "0".into(),
                source: boxed("mismatched types"),
            },
            Permanent,
        ),
        (
            sqlx::Error::AnyDriverError(boxed("driver failed")),
            Permanent,
        ),
        (sqlx::Error::InvalidArgument("bad".into()), Permanent),
        (sqlx::Error::InvalidSavePointStatement, Permanent),
        (sqlx::Error::BeginFailed, Permanent),
        // `Database` from an unknown driver goes by its SQLSTATE.
        (
            OtherDriverError {
                code: "40001",
                message: "could not serialize access",
            }
            .into(),
            Contention,
        ),
        (
            OtherDriverError {
                code: "57P01",
                message: "terminating connection due to administrator command",
            }
            .into(),
            ConnectionLost,
        ),
        (
            OtherDriverError {
                code: "23505",
                message: "duplicate key value",
            }
            .into(),
            Permanent,
        ),
        // A code of at most four digits is never a SQLSTATE: it is SQLite's extended result
        // code, as it arrives from a build without the `sqlite` feature.
        (OtherDriverError::sqlstate("5"), Contention),
        (OtherDriverError::sqlstate("517"), Contention),
        (OtherDriverError::sqlstate("2067"), Permanent),
    ];
    assert_table("sqlx::Error", &rows, |error| {
        let direct = classify_sqlx(error);
        assert_eq!(
            direct,
            error.classify(),
            "{error:?}: classify_sqlx and Classify::classify disagree"
        );
        assert_eq!(
            direct,
            classify_error(error),
            "{error:?}: classify_sqlx and classify_error disagree"
        );
        direct
    });
}

#[tokio::test]
async fn real_sqlite_unique_violation_is_permanent() {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    sqlx::query("CREATE TABLE users (email TEXT NOT NULL UNIQUE)")
        .execute(&mut conn)
        .await
        .unwrap();
    let insert = "INSERT INTO users (email) VALUES ('a@example.com')";
    sqlx::query(insert).execute(&mut conn).await.unwrap();
    let error = sqlx::query(insert).execute(&mut conn).await.unwrap_err();

    let db = error.as_database_error().expect("a database error");
    assert_eq!(
        db.code().as_deref(),
        Some("2067"),
        "SQLITE_CONSTRAINT_UNIQUE"
    );
    assert!(db.is_unique_violation());
    assert_eq!(classify_sqlx(&error), Permanent);
    assert_eq!(error.classify(), Permanent);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn real_sqlite_busy_from_a_held_write_lock_is_contention() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("busy.sqlite"))
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
    let mut other = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .execute(&mut holder)
        .await
        .unwrap();

    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let error = sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap_err();

    let db = error.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("5"), "SQLITE_BUSY, got {error}");
    assert_eq!(classify_sqlx(&error), Contention);
    assert_eq!(error.classify(), Contention);
    // The driver's error on its own, outside `sqlx::Error`, is recognised too.
    assert_eq!(classify_error(db.as_error()), Contention);

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test]
async fn real_host_name_that_does_not_resolve_is_a_connect_error() {
    // `.invalid` is reserved (RFC 6761): it never resolves, so the connect fails in the DNS
    // lookup, before anything is sent.
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("db-retry-test.invalid")
        .port(5432)
        .username("nobody");
    let attempt = sqlx::PgConnection::connect_with(&options);
    let error = tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .expect("the DNS lookup should fail, not hang")
        .expect_err("a .invalid host name must not resolve");
    assert!(
        matches!(&error, sqlx::Error::Io(_)),
        "sqlx reports a failed lookup as an io error, got {error:?}"
    );
    assert_eq!(classify_sqlx(&error), Connect, "{error:?}");
    assert_eq!(error.classify(), Connect);
}

const ALL_CLASSES: [ErrorClass; 5] = [Connect, ConnectionLost, Contention, Unavailable, Permanent];

#[test]
fn only_a_lost_connection_may_have_run() {
    for class in ALL_CLASSES {
        assert_eq!(
            class.may_have_run(),
            class == ConnectionLost,
            "{class:?}.may_have_run()"
        );
    }
}

#[test]
fn lost_connections_and_unavailable_servers_discard_the_connection() {
    for class in ALL_CLASSES {
        assert_eq!(
            class.discards_connection(),
            matches!(class, ConnectionLost | Unavailable),
            "{class:?}.discards_connection()"
        );
    }
}

#[test]
fn every_class_but_permanent_is_transient() {
    for class in ALL_CLASSES {
        assert_eq!(class.is_transient(), class != Permanent, "{class:?}");
    }
}

#[test]
fn retry_on_covers_exactly_the_classes_in_the_contract() {
    let rows: &[((RetryOn, ErrorClass), bool)] = &[
        ((RetryOn::Transient, Connect), true),
        ((RetryOn::Transient, ConnectionLost), true),
        ((RetryOn::Transient, Contention), true),
        ((RetryOn::Transient, Unavailable), true),
        ((RetryOn::Transient, Permanent), false),
        ((RetryOn::Connection, Connect), true),
        ((RetryOn::Connection, ConnectionLost), true),
        ((RetryOn::Connection, Contention), false),
        ((RetryOn::Connection, Unavailable), true),
        ((RetryOn::Connection, Permanent), false),
        ((RetryOn::Contention, Connect), false),
        ((RetryOn::Contention, ConnectionLost), false),
        ((RetryOn::Contention, Contention), true),
        ((RetryOn::Contention, Unavailable), false),
        ((RetryOn::Contention, Permanent), false),
    ];
    let mismatches: Vec<String> = rows
        .iter()
        .filter(|((on, class), expected)| on.covers(*class) != *expected)
        .map(|((on, class), expected)| format!("  {on:?}.covers({class:?}) should be {expected}"))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(RetryOn::default(), RetryOn::Transient);
}

#[test]
fn class_names_are_stable() {
    let names: Vec<String> = ALL_CLASSES.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "connect",
            "connection_lost",
            "contention",
            "unavailable",
            "permanent"
        ]
    );
    for class in ALL_CLASSES {
        assert_eq!(class.as_str(), class.to_string());
    }
}

#[test]
fn setup_problems_get_a_hint_naming_the_fix() {
    use db_retry_runtime::postgres_configuration_hint as hint;
    let startup = hint("08P01", "unsupported startup parameter: extra_float_digits").unwrap();
    assert!(startup.contains("ignore_startup_parameters = extra_float_digits"));
    for (code, message) in [
        ("42P05", "prepared statement \"sqlx_s_1\" already exists"),
        ("26000", "prepared statement \"sqlx_s_9\" does not exist"),
        ("26000", "unnamed prepared statement does not exist"),
        (
            "08P01",
            "bind message supplies 1 parameters, but prepared statement \"sqlx_s_3\" requires 2",
        ),
    ] {
        let hint = hint(code, message).unwrap_or_else(|| panic!("no hint for {code} {message}"));
        assert!(hint.contains("pool_mode = session"), "{hint}");
    }
    // The user's own statements, and failures, get none.
    assert_eq!(
        hint("26000", "prepared statement \"mine\" does not exist"),
        None
    );
    assert_eq!(hint("08P01", "server conn crashed?"), None);
    assert_eq!(
        hint(
            "57P01",
            "terminating connection due to administrator command"
        ),
        None
    );
}
