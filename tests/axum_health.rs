//! The axum example as a user runs it: started against a throwaway PostgreSQL, queried over
//! HTTP, and asked for `/health` while the database is down and after it is back.

use db_retry_test_kit as support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::pg::PgServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `cargo test` builds the examples next to the test binaries.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("examples/axum_service");
    assert!(
        binary.exists(),
        "{} is missing: run the whole suite with `cargo test --workspace`, which builds the \
         examples (or `cargo build --example axum_service` first)",
        binary.display()
    );
    binary
}

struct Service(Child);

impl Service {
    /// Starts the example against `database_url` on a free port; returns it and its address.
    fn start(database_url: &str) -> (Service, SocketAddr) {
        let port = free_port();
        let child = Command::new(example_binary())
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the axum example");
        (Service(child), SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HTTP/1.1 request; returns the status code and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

async fn wait_for_health(addr: SocketAddr, deadline: Duration) -> (u16, String) {
    let started = Instant::now();
    loop {
        match request(addr, "GET", "/health").await {
            Ok(reply) => return reply,
            Err(error) if started.elapsed() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("service never answered on {addr}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_unavailable_while_the_database_is_down() {
    let server = PgServer::start();
    let (_service, addr) = Service::start(&server.url());

    let (status, body) = wait_for_health(addr, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "healthy: {body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    assert!(
        body.contains(r#""size":"#) && body.contains(r#""idle":"#),
        "{body}"
    );
    let (status, body) = request(addr, "POST", "/counter/visits").await.unwrap();
    assert_eq!(
        (status, body.contains(r#""hits":1"#)),
        (200, true),
        "{body}"
    );

    server.stop_fast();
    // The heartbeat notices within a beat or two; each answer comes at once, without a query.
    let stopped = Instant::now();
    let (status, body) = loop {
        let asked = Instant::now();
        let (status, body) = request(addr, "GET", "/health")
            .await
            .expect("service still up");
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "health must answer promptly, took {took:?}"
        );
        if status != 200 || stopped.elapsed() > Duration::from_secs(3) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "health while down: {status} after {:?}: {body}",
        stopped.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""status":"unavailable""#), "{body}");

    server.start_again();
    let (status, body) = request(addr, "GET", "/counter/visits").await.unwrap();
    assert_eq!(
        (status, body.contains(r#""hits":1"#)),
        (200, true),
        "{body}"
    );
    let (status, body) = wait_for_status(addr, 200, Duration::from_secs(3)).await;
    assert_eq!(status, 200, "healthy again: {body}");
}

/// Asks `/health` until it answers `status` or `deadline` passes; the last answer.
async fn wait_for_status(addr: SocketAddr, status: u16, deadline: Duration) -> (u16, String) {
    let started = Instant::now();
    loop {
        let reply = request(addr, "GET", "/health").await.unwrap();
        if reply.0 == status || started.elapsed() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_service_down_gracefully() {
    let server = PgServer::start();
    let (mut service, addr) = Service::start(&server.url());
    let (status, body) = wait_for_health(addr, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "{body}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(service.0.id() as libc::pid_t, libc::SIGTERM) };
    let asked = Instant::now();
    let exit = loop {
        if let Some(exit) = service.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the service did not stop within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "a clean exit after SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_waits_for_a_database_that_starts_late() {
    let server = PgServer::start();
    server.stop_fast();
    let (mut service, addr) = Service::start(&server.url());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        service.0.try_wait().unwrap().is_none(),
        "the service must wait for the database, not exit"
    );

    server.start_again();
    let (status, body) = wait_for_health(addr, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "{body}");
}

/// The value of the Prometheus sample `name{labels}` whose labels include every one of `with`.
fn sample(metrics: &str, name: &str, with: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| with.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .reduce(|a: f64, b| a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_attempts_and_retries_while_faults_are_injected() {
    let server = PgServer::start();
    let proxy = support::proxy::FaultProxy::start(server.addr()).await;
    let (_service, addr) = Service::start(&server.url_via(proxy.addr()));
    let (status, body) = wait_for_health(addr, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(addr, "POST", "/counter/visits").await.unwrap();
    assert_eq!(status, 200, "{body}");

    // Half of the reads have their connection reset around the query: each of those is retried.
    proxy.reset_around(b"SELECT hits", 0.5, 7);
    let mut served = 0;
    for _ in 0..20 {
        let (status, _) = request(addr, "GET", "/counter/visits").await.unwrap();
        served += u32::from(status == 200);
    }
    proxy.pass();
    let stats = proxy.stats();

    let (status, metrics) = request(addr, "GET", "/metrics").await.unwrap();
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("db_retry_attempts_total"),
        "no db-retry metrics at all: the example was built without db-retry's `metrics` \
         feature. Run the suite as README.md says (`cargo test --workspace`, whose runtime \
         tests turn it on), or `cargo build --example axum_service --features metrics` first. \
         Got: {metrics}"
    );
    let read = r#"function="axum_service::read""#;
    let attempts = sample(&metrics, "db_retry_attempts_total", &[read])
        .unwrap_or_else(|| panic!("no attempts counted for read: {metrics}"));
    let retries = sample(&metrics, "db_retry_retries_total", &[read]).unwrap_or(0.0);
    let lost = sample(
        &metrics,
        "db_retry_retries_total",
        &[read, r#"class="connection_lost""#],
    )
    .unwrap_or(0.0);
    println!("served {served}/20, proxy {stats:?}, attempts {attempts}, retries {retries}");
    assert!(
        retries >= 1.0,
        "faults were injected but no retry was counted: {metrics}"
    );
    assert_eq!(
        lost, retries,
        "every retry here followed a reset: {metrics}"
    );
    assert_eq!(
        attempts,
        20.0 + retries,
        "one first attempt per request plus one per retry: {metrics}"
    );
    assert!(
        sample(&metrics, "db_retry_backoff_seconds_count", &[read]).is_some()
            || sample(&metrics, "db_retry_backoff_seconds", &[read]).is_some(),
        "the delays before retries: {metrics}"
    );
    assert!(
        metrics.contains("# HELP db_retry_attempts_total"),
        "described: {metrics}"
    );
}
