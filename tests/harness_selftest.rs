//! Tests of the test harness itself (tests/support): real servers, real faults, real outcomes.
//! Timings go to stderr; see them with `cargo test --test harness_selftest -- --nocapture`.

use db_retry_test_kit as support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::mariadb::{self, MariaDbServer};
use support::pg::{self, PgServer};
use support::proxy::FaultProxy;

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    Some(error.as_database_error()?.code()?.into_owned())
}

fn io_kind(error: &sqlx::Error) -> Option<ErrorKind> {
    match error {
        sqlx::Error::Io(e) => Some(e.kind()),
        _ => None,
    }
}

async fn pg_select_1(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(conn).await
}

async fn count_rows(url: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await
        .expect("count rows")
}

#[tokio::test]
async fn pg_stop_and_start_again_on_the_same_port() {
    let started = Instant::now();
    let pg = PgServer::start();
    eprintln!(
        "pg start (may include the template build): {:?}",
        started.elapsed()
    );
    let port = pg.port();

    let pool = pg.pool(2).await;
    pg.exec_admin("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
        .await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    pool.close().await;

    // Fast shutdown tells an open session why it ends.
    let mut held = PgConnection::connect(&pg.url()).await.unwrap();
    let t = Instant::now();
    pg.stop_fast();
    eprintln!("pg stop_fast: {:?}", t.elapsed());
    assert!(!pg.is_running());
    let err = pg_select_1(&mut held).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err:?}");
    let err = PgConnection::connect(&pg.url()).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionRefused), "{err:?}");

    let t = Instant::now();
    pg.start_again();
    eprintln!("pg start_again after fast stop: {:?}", t.elapsed());
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(count_rows(&pg.url()).await, 2, "data survives a restart");

    // Immediate shutdown: the session just sees its socket close.
    let mut held = PgConnection::connect(&pg.url()).await.unwrap();
    let t = Instant::now();
    pg.stop_immediate();
    eprintln!("pg stop_immediate: {:?}", t.elapsed());
    let err = pg_select_1(&mut held).await.unwrap_err();
    assert!(
        io_kind(&err).is_some(),
        "expected an I/O error, got {err:?}"
    );

    let t = Instant::now();
    pg.start_again();
    eprintln!(
        "pg start_again after immediate stop (crash recovery): {:?}",
        t.elapsed()
    );
    assert_eq!(count_rows(&pg.url()).await, 2);
}

#[tokio::test]
async fn pg_terminated_backend_gives_57p01_then_io_error() {
    let pg = PgServer::start();
    let mut victim = PgConnection::connect(&pg.url()).await.unwrap();
    let mut bystander = PgConnection::connect(&pg.url()).await.unwrap();
    let victim_pid = pg::backend_pid(&mut victim).await;
    let bystander_pid = pg::backend_pid(&mut bystander).await;

    pg.terminate_backend(victim_pid).await;
    let err = pg_select_1(&mut victim).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err:?}");
    let err = pg_select_1(&mut victim).await.unwrap_err();
    assert!(
        io_kind(&err).is_some(),
        "expected an I/O error, got {err:?}"
    );
    assert_eq!(pg_select_1(&mut bystander).await.unwrap(), 1);

    // Keeping the bystander: nothing else to terminate.
    assert_eq!(pg.terminate_backends_except(&[bystander_pid]).await, 0);
    assert_eq!(pg.terminate_backends_except(&[]).await, 1);
    let err = pg_select_1(&mut bystander).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err:?}");
}

#[tokio::test]
async fn pg_max_connections_exhaustion_and_change() {
    let pg = PgServer::builder()
        .max_connections(3)
        .setting("deadlock_timeout", "50ms")
        .start();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(PgConnection::connect(&pg.url()).await.unwrap());
    }
    let deadlock_timeout: String = sqlx::query_scalar("SHOW deadlock_timeout")
        .fetch_one(&mut held[0])
        .await
        .unwrap();
    assert_eq!(deadlock_timeout, "50ms", "builder setting applied");
    let err = PgConnection::connect(&pg.url()).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");

    for conn in held.drain(..) {
        conn.close().await.unwrap();
    }
    let t = Instant::now();
    pg.set_max_connections(4).await;
    eprintln!(
        "pg set_max_connections (ALTER SYSTEM + restart): {:?}",
        t.elapsed()
    );

    let mut conn = PgConnection::connect(&pg.url()).await.unwrap();
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(max, "4");
    held.push(conn);
    for _ in 0..3 {
        held.push(PgConnection::connect(&pg.url()).await.unwrap());
    }
    let err = PgConnection::connect(&pg.url()).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
}

/// Servers started at once get their own ports and directories, and outlive the thread that
/// started them (the parent-death signal is tied to the harness's spawner thread, not theirs).
#[tokio::test]
async fn pg_concurrent_servers_are_independent() {
    drop(PgServer::start()); // build the template first, so the timing below is per server
    let t = Instant::now();
    let servers: Vec<PgServer> = (0..3)
        .map(|_| std::thread::spawn(PgServer::start))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    eprintln!("3 pg servers started concurrently: {:?}", t.elapsed());

    let mut ports: Vec<u16> = servers.iter().map(|server| server.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "distinct ports");

    // The starting threads have exited by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for server in &servers {
        let mut conn = PgConnection::connect(&server.url()).await.unwrap();
        let port: String = sqlx::query_scalar("SHOW port")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(port, server.port().to_string());
    }

    let t = Instant::now();
    let one = PgServer::start();
    eprintln!("one more pg server (template ready): {:?}", t.elapsed());
    drop(one);
}

#[tokio::test]
async fn pg_drop_stops_the_server_and_removes_its_files_also_on_panic() {
    let (url, data) = {
        let pg = PgServer::start();
        (pg.url(), pg.data_dir().to_owned())
    };
    let err = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionRefused), "{err:?}");
    assert!(!data.exists(), "{} still exists", data.display());

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let pg = PgServer::start();
        tx.send((pg.url(), pg.data_dir().to_owned())).unwrap();
        panic!("test failure while the server runs");
    })
    .join();
    assert!(panicked.is_err());
    let (url, data) = rx.recv().unwrap();
    let err = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionRefused), "{err:?}");
    assert!(!data.exists(), "{} still exists", data.display());
}

#[tokio::test]
async fn proxy_passes_through_and_reset_all_breaks_connections() {
    let pg = PgServer::start();
    let proxy = FaultProxy::start(pg.addr()).await;
    let url = pg.url_via(proxy.addr());

    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(pg_select_1(&mut conn).await.unwrap(), 1);
    assert_eq!(proxy.stats().accepted, 1);

    assert_eq!(proxy.reset_all().await, 1);
    let err = pg_select_1(&mut conn).await.unwrap_err();
    assert!(
        io_kind(&err).is_some(),
        "expected an I/O error, got {err:?}"
    );
    assert_eq!(proxy.stats().resets, 1);

    // reset_all is a one-off, not a mode: new connections work.
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(pg_select_1(&mut conn).await.unwrap(), 1);
    assert_eq!(proxy.stats().accepted, 2);
}

#[tokio::test]
async fn proxy_reset_after_bytes_breaks_new_connections() {
    let pg = PgServer::start();
    let proxy = FaultProxy::start(pg.addr()).await;
    let url = pg.url_via(proxy.addr());
    let mut survivor = PgConnection::connect(&url).await.unwrap();

    // 0: reset on accept; 20: in the middle of the startup reply (~400 bytes).
    for n in [0, 20] {
        proxy.reset_after_bytes(n);
        let err = PgConnection::connect(&url).await.unwrap_err();
        assert!(io_kind(&err).is_some(), "reset after {n}: got {err:?}");
    }
    assert_eq!(proxy.stats().resets, 2);
    // Connections made before are not affected.
    assert_eq!(pg_select_1(&mut survivor).await.unwrap(), 1);

    // Past the startup reply: connecting works, the first result set is cut.
    proxy.reset_after_bytes(2000);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let err = sqlx::query_scalar::<_, String>("SELECT repeat('x', 10000)")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(io_kind(&err).is_some(), "got {err:?}");
    assert_eq!(proxy.stats().resets, 3);

    proxy.pass();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(pg_select_1(&mut conn).await.unwrap(), 1);
}

#[tokio::test]
async fn proxy_latency_and_blackhole() {
    let pg = PgServer::start();
    let proxy = FaultProxy::start(pg.addr()).await;
    let url = pg.url_via(proxy.addr());
    let mut conn = PgConnection::connect(&url).await.unwrap();

    proxy.latency(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(pg_select_1(&mut conn).await.unwrap(), 1);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    proxy.pass();
    let t = Instant::now();
    assert_eq!(pg_select_1(&mut conn).await.unwrap(), 1);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );

    proxy.blackhole();
    let stalled = tokio::time::timeout(Duration::from_millis(300), pg_select_1(&mut conn)).await;
    assert!(stalled.is_err(), "query answered through a blackhole");
    let connect = tokio::time::timeout(Duration::from_millis(300), PgConnection::connect(&url));
    assert!(connect.await.is_err(), "connected through a blackhole");

    // Held bytes flow once the partition heals: the abandoned query's reply arrives and sqlx
    // drains it before the next query, so the same connection is usable.
    proxy.pass();
    let two: i32 = sqlx::query_scalar("SELECT 2")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(two, 2);
    let mut fresh = PgConnection::connect(&url).await.unwrap();
    assert_eq!(pg_select_1(&mut fresh).await.unwrap(), 1);
    assert_eq!(proxy.stats().resets, 0);
}

/// A target that sends 4 KiB to every client, so that a reset shows as a short read.
async fn byte_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(&[7u8; 4096]).await;
            });
        }
    });
    addr
}

/// For each of `n` sequential connections: was it cut short?
async fn reset_pattern(proxy: &FaultProxy, n: usize) -> Vec<bool> {
    let mut pattern = Vec::new();
    for _ in 0..n {
        let mut socket = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let mut received = Vec::new();
        let result = socket.read_to_end(&mut received).await;
        pattern.push(result.is_err() || received.len() < 4096);
    }
    pattern
}

#[tokio::test]
async fn proxy_reset_fraction_is_seeded_and_counted() {
    let target = byte_server().await;
    let proxy = FaultProxy::start(target).await;

    proxy.reset_fraction(0.5, 42);
    let first = reset_pattern(&proxy, 100).await;
    let resets = first.iter().filter(|&&r| r).count();
    assert!(
        (30..=70).contains(&resets),
        "{resets} of 100 reset at p = 0.5"
    );
    assert_eq!(proxy.stats().resets, resets as u64);

    // The same seed replays the same choices.
    proxy.reset_fraction(0.5, 42);
    assert_eq!(reset_pattern(&proxy, 100).await, first);

    proxy.reset_fraction(0.0, 1);
    assert!(reset_pattern(&proxy, 20).await.iter().all(|&r| !r));
    proxy.reset_fraction(1.0, 1);
    assert!(reset_pattern(&proxy, 20).await.iter().all(|&r| r));
    assert_eq!(proxy.stats().accepted, 240);
}

#[tokio::test]
async fn mariadb_start_query_kill_and_restart() {
    let t = Instant::now();
    let db = MariaDbServer::start();
    eprintln!(
        "mariadb start (may include the template build): {:?}",
        t.elapsed()
    );

    let pool = db.pool(2).await;
    db.exec_admin("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    pool.close().await;

    let mut victim = MySqlConnection::connect(&db.url()).await.unwrap();
    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    db.exec_admin(&format!("KILL {id}")).await;
    let err = sqlx::query("SELECT 1")
        .execute(&mut victim)
        .await
        .unwrap_err();
    assert!(
        io_kind(&err).is_some(),
        "expected an I/O error, got {err:?}"
    );

    let t = Instant::now();
    db.stop_fast();
    db.start_again();
    eprintln!("mariadb stop_fast + start_again: {:?}", t.elapsed());
    let mut conn = MySqlConnection::connect(&db.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn mariadb_max_connections_gives_1040() {
    let db = MariaDbServer::builder().max_connections(10).start();
    let t = Instant::now();
    let other = MariaDbServer::start();
    eprintln!(
        "one more mariadb server (template ready): {:?}",
        t.elapsed()
    );
    drop(other);

    // root has SUPER, which MariaDB lets in once beyond max_connections.
    let mut held = Vec::new();
    for _ in 0..11 {
        held.push(MySqlConnection::connect(&db.url()).await.unwrap());
    }
    let err = MySqlConnection::connect(&db.url()).await.unwrap_err();
    assert_eq!(mariadb::mysql_error_number(&err), Some(1040), "{err:?}");
}
