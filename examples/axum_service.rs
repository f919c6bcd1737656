//! An axum service whose handlers call `#[db_retry]` repository functions, with a `/health`
//! endpoint fed by a heartbeat (no query per request), a pool drained after a failover, a
//! graceful shutdown on SIGTERM or ctrl-c, a Prometheus `/metrics` endpoint (db-retry's counters are there when it is built
//! with the `metrics` feature), and a startup that waits for the database instead of crashing.
//!
//! The split the README recommends: the attribute goes on the repository functions, which take
//! `&PgPool` and borrowed arguments; handlers take the extractors and call them. One handler,
//! `delete_counter`, carries the attribute itself to show that extractor patterns work there
//! too (`Path(name): Path<String>` is taken apart once; only `name` is cloned per attempt).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres PORT=3000 cargo run --example axum_service --features metrics
//! curl localhost:3000/health
//! curl localhost:3000/metrics
//! curl localhost:3000/counter/hits -X POST
//! curl localhost:3000/counter/hits -X DELETE
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use db_retry::{db_retry, FailoverDrain, Heartbeat};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

/// Counters keyed by name: an increment must not run twice. `idempotent = false` on an
/// `#[acquire]` function retries only failures while getting the connection; once the statement
/// may have been sent, the error goes to the caller.
#[db_retry(idempotent = false, deadline = 5s)]
async fn bump(#[acquire] conn: &mut PgConnection, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO counters (name, hits) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET hits = counters.hits + 1 RETURNING hits",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
}

#[db_retry(deadline = 5s)]
async fn read(pool: &PgPool, name: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT hits FROM counters WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

#[db_retry(max = 10, deadline = 30s)]
async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, hits bigint NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The heartbeat's latest look at the database: no query per request.
async fn health(
    State((pool, heartbeat)): State<(PgPool, Arc<Heartbeat>)>,
) -> (StatusCode, Json<Value>) {
    let health = heartbeat.health();
    let reachable = health.as_ref().is_some_and(|health| health.reachable);
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let idle = pool.num_idle();
    let body = json!({
        "status": if reachable { "ok" } else { "unavailable" },
        "latency_ms": health.as_ref().and_then(|h| h.latency).map(|l| l.as_secs_f64() * 1000.0),
        "in_recovery": health.as_ref().is_some_and(|h| h.in_recovery),
        "pool": { "size": pool.size(), "idle": idle, "in_use": pool.size() as usize - idle.min(pool.size() as usize) },
        "error": health.and_then(|h| h.error),
    });
    (status, Json(body))
}

/// What db-retry counted (attempts, retries by class, give-ups by reason, budget and breaker),
/// in Prometheus's text format.
async fn metrics(State(handle): State<PrometheusHandle>) -> String {
    handle.render()
}

async fn get_counter(
    State(pool): State<PgPool>,
    Path(name): Path<String>,
) -> Result<Json<Value>, (StatusCode, String)> {
    match read(&pool, &name).await {
        Ok(Some(hits)) => Ok(Json(json!({ "name": name, "hits": hits }))),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no counter named {name}"))),
        Err(error) => Err(unavailable(error)),
    }
}

async fn post_counter(
    State(pool): State<PgPool>,
    Path(name): Path<String>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let hits = bump(&pool, &name).await.map_err(unavailable)?;
    Ok(Json(json!({ "name": name, "hits": hits })))
}

/// The handler's error: its message hides the database error, the retry event still names it.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("the database is unavailable")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response()
    }
}

/// A handler with the attribute. Deleting twice leaves the same table, so the retry is safe; but
/// a retry after a lost connection cannot tell whether the first DELETE found the row, so the
/// answer does not depend on it. Were it to call a `#[db_retry]` repository function, only this
/// outer layer would retry.
#[db_retry(deadline = 5s)]
async fn delete_counter(
    State(pool): State<PgPool>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    sqlx::query("DELETE FROM counters WHERE name = $1")
        .bind(name)
        .execute(&pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn unavailable(error: sqlx::Error) -> (StatusCode, String) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("database unavailable: {error}"),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info,db_retry=debug")
        .with_writer(std::io::stderr)
        .init();
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "This example needs a PostgreSQL server. Set DATABASE_URL, for example:\n\n    \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             cargo run --example axum_service\n"
        );
        std::process::exit(2);
    };
    // The recorder goes in before the first retried call, so every function's counters reach it.
    let metrics_handle = PrometheusBuilder::new().install_recorder()?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let options: PgConnectOptions = url.parse()?;

    // Wait for the database (it may still be starting) rather than crash-looping.
    db_retry::wait_until_ready(&options, Duration::from_secs(60)).await?;
    // After a failover or restart, no request is served by a connection to the old server: the
    // drain turns those away, and the heartbeat notices the change before a request does (and
    // wakes retries sleeping through an outage once the database answers again).
    let drain = FailoverDrain::new();
    let pool = drain
        .install(
            PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(2)),
        )
        .connect_lazy_with(options);
    let heartbeat = Arc::new(Heartbeat::spawn(&pool, &drain, Duration::from_millis(250)));
    migrate(&pool).await?;

    let app = Router::new()
        .route(
            "/counter/{name}",
            get(get_counter).post(post_counter).delete(delete_counter),
        )
        .with_state(pool.clone())
        .merge(
            Router::new()
                .route("/health", get(health))
                .with_state((pool.clone(), heartbeat)),
        )
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(metrics_handle),
        );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // On the signal the pool closes at once, so a request still retrying ends with
    // `PoolClosed` (never retried) instead of sleeping out its deadline, while axum answers
    // the requests in flight and takes no new ones.
    let closing = pool.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_requested().await;
            tracing::info!("shutting down");
            tokio::spawn(async move { closing.close().await });
        })
        .await?;
    pool.close().await;
    tracing::info!("shut down");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what a container runtime sends).
async fn shutdown_requested() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
