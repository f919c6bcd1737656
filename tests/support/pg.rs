//! A throwaway PostgreSQL server per test, so tests can kill backends, restart and exhaust it
//! without touching anyone else's database.
//!
//! `initdb` runs once per test process (~0.9 s) into a template that every server copies
//! (~0.06 s on tmpfs; see `process::scratch_root`), then the server answers `SELECT 1` within
//! ~0.1 s. The server is started directly (not through `pg_ctl`) so that it can carry a
//! parent-death signal and be stopped with the exact signal a test asks for.

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use super::process::{self, Daemon, NotReady, PortLease, Server, ServiceUser};

const PACKAGE_HINT: &str =
    "install the Debian package `postgresql` (apt-get install -y postgresql)";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings every test server gets (written once into the template's postgresql.conf).
/// Durability is pointless for throwaway data and costs fsyncs. `superuser_reserved_connections
/// = 0` because `url()` connects as the superuser: `max_connections(n)` then means exactly `n`
/// sessions before 53300, admin connections included.
const TEMPLATE_CONF: &str = "
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
synchronous_commit = off
superuser_reserved_connections = 0
shared_buffers = 32MB
# Per-server settings (port, socket dir, max_connections, builder settings). ALTER SYSTEM writes
# postgresql.auto.conf, which is read after this file and so overrides it.
include_if_exists = 'harness.conf'
";

struct Template {
    bin: PathBuf,
    data: PathBuf,
    user: Option<ServiceUser>,
}

/// The initdb'd data directory all servers of this process copy. Built on first use; concurrent
/// first uses wait for the one build.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let bin = bin_dir();
        let user = process::service_user("postgres", "postgresql");
        let dir = process::owned_tempdir("db-retry-pg-template-", user);
        let data = dir.path().join("data");
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            // No fsync of the new cluster: it is a throwaway template.
            .arg("-N")
            // 1 MB WAL segments instead of 16: less to copy for every server.
            .arg("--wal-segsize=1");
        process::as_user(&mut initdb, user, dir.path());
        process::run_setup(initdb, "initdb");
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read template postgresql.conf");
        text.push_str(TEMPLATE_CONF);
        std::fs::write(&conf, text).expect("write template postgresql.conf");
        process::remove_at_exit(dir);
        Template { bin, data, user }
    })
}

/// The directory holding `initdb` and `postgres`. Debian installs the real binaries under
/// /usr/lib/postgresql/<major>/bin and puts only wrappers or links on PATH, so the newest
/// versioned directory wins; PATH is the fallback for other layouts.
fn bin_dir() -> PathBuf {
    let has_both = |dir: &Path| {
        process::is_executable(&dir.join("initdb")) && process::is_executable(&dir.join("postgres"))
    };
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((major, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return bin;
    }
    match process::find_on_path("initdb", &[]) {
        Some(dir) if has_both(&dir) => dir,
        _ => panic!(
            "PostgreSQL server binaries (initdb, postgres) were found neither under \
             /usr/lib/postgresql/*/bin nor on PATH; {PACKAGE_HINT}"
        ),
    }
}

/// Options for [`PgServer`]; see [`PgServer::builder`].
#[derive(Clone, Debug)]
pub struct PgServerBuilder {
    max_connections: u32,
    settings: Vec<(String, String)>,
}

impl PgServerBuilder {
    /// Sessions allowed before PostgreSQL answers 53300 "too many clients" (default 100). Counts
    /// every session, including `admin()` ones (see `TEMPLATE_CONF`).
    pub fn max_connections(mut self, n: u32) -> Self {
        assert!(n >= 1, "max_connections must be at least 1");
        self.max_connections = n;
        self
    }

    /// Any other server setting, e.g. `.setting("deadlock_timeout", "50ms")`.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the server and waits until it answers `SELECT 1`.
    pub fn start(self) -> PgServer {
        let template = template();
        let dir = process::owned_tempdir("db-retry-pg-", template.user);
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        process::copy_tree(&template.data, &data);
        std::fs::create_dir(&socket_dir).expect("create socket dir");
        process::chown(&socket_dir, template.user);

        let daemon = Daemon::new(
            "postgres",
            template.bin.join("postgres"),
            vec![OsString::from("-D"), data.clone().into_os_string()],
            template.user,
            dir.path().to_owned(),
            dir.path().join("server.log"),
            // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down
            // with it. (SIGKILL would leave them to notice the dead postmaster on their own.)
            libc::SIGQUIT,
        );
        // The port is probed free, then bound by the server a moment later; if another process
        // took it in between, try another one.
        let mut attempts = 1;
        let port = loop {
            let port = PortLease::new();
            self.write_harness_conf(&data, &socket_dir, port.port());
            daemon.spawn();
            match wait_ready(&daemon, port.port()) {
                Ok(()) => break port,
                Err(NotReady::Exited(_))
                    if attempts < 5 && daemon.log_contains("already in use") =>
                {
                    attempts += 1;
                }
                Err(e) => panic_not_ready(&daemon, &data, e),
            }
        };
        PgServer {
            // Immediate: the data is thrown away, so there is nothing to checkpoint.
            server: Server::new(port, daemon, libc::SIGQUIT, dir),
            data,
        }
    }

    /// Starts a hot standby of `primary`, made with `pg_basebackup -R` (streaming replication,
    /// as `application_name` "standby"), with this builder's settings and
    /// `synchronous_standby_names = ''` of its own: `pg_basebackup` copies the primary's, and a
    /// promoted standby that kept it would wait forever for a standby of its own. Waits until
    /// it answers.
    pub fn start_standby_of(self, primary: &PgServer) -> PgServer {
        let address = primary.addr();
        self.start_standby_via(address)
    }

    /// [`PgServerBuilder::start_standby_of`] a primary reached at `address` (a
    /// [`FaultProxy`](super::proxy::FaultProxy) in front of it, say): the base backup and the
    /// replication stream both go through it.
    pub fn start_standby_via(self, address: SocketAddr) -> PgServer {
        let template = template();
        let dir = process::owned_tempdir("db-retry-pg-standby-", template.user);
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir).expect("create socket dir");
        process::chown(&socket_dir, template.user);
        for tool in ["pg_basebackup", "pg_ctl"] {
            assert!(
                process::is_executable(&template.bin.join(tool)),
                "{tool} is missing from {}; {PACKAGE_HINT}",
                template.bin.display()
            );
        }
        let mut basebackup = std::process::Command::new(template.bin.join("pg_basebackup"));
        basebackup
            .arg("-d")
            .arg(format!(
                "host={} port={} user=postgres application_name=standby",
                address.ip(),
                address.port()
            ))
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        process::as_user(&mut basebackup, template.user, dir.path());
        process::run_setup(basebackup, "pg_basebackup");
        let standby = self.setting("synchronous_standby_names", "");
        let daemon = Daemon::new(
            "postgres (standby)",
            template.bin.join("postgres"),
            // On the command line too: it wins over a postgresql.auto.conf copied from the
            // primary.
            vec![
                OsString::from("-D"),
                data.clone().into_os_string(),
                OsString::from("-c"),
                OsString::from("synchronous_standby_names="),
            ],
            template.user,
            dir.path().to_owned(),
            dir.path().join("server.log"),
            libc::SIGQUIT,
        );
        let port = PortLease::new();
        standby.write_harness_conf(&data, &socket_dir, port.port());
        daemon.spawn();
        if let Err(e) = wait_ready(&daemon, port.port()) {
            panic_not_ready(&daemon, &data, e);
        }
        PgServer {
            server: Server::new(port, daemon, libc::SIGQUIT, dir),
            data,
        }
    }

    fn write_harness_conf(&self, data: &Path, socket_dir: &Path, port: u16) {
        let mut conf = format!(
            "port = {port}\nunix_socket_directories = {}\nmax_connections = {}\n",
            quote(&socket_dir.to_string_lossy()),
            self.max_connections
        );
        for (name, value) in &self.settings {
            conf.push_str(&format!("{name} = {}\n", quote(value)));
        }
        std::fs::write(data.join("harness.conf"), conf).expect("write harness.conf");
    }
}

/// A postgresql.conf string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A PostgreSQL server of the test's own, on 127.0.0.1 and a free port, with trust
/// authentication for the superuser `postgres`. Dropping it stops the server (immediate shutdown)
/// and removes its files, also when the test panics.
pub struct PgServer {
    server: Server,
    data: PathBuf,
}

impl std::ops::Deref for PgServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl PgServer {
    /// A server with default settings (`max_connections = 100`).
    pub fn start() -> PgServer {
        PgServer::builder().start()
    }

    pub fn builder() -> PgServerBuilder {
        PgServerBuilder {
            max_connections: 100,
            settings: Vec::new(),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url_via(self.addr())
    }

    /// The URL of this server's database reached through `addr`, e.g. a
    /// [`FaultProxy`](super::proxy::FaultProxy) in front of it.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://postgres@{addr}/postgres")
    }

    /// Fast shutdown (SIGINT): sessions get 57P01 "terminating connection due to administrator
    /// command", then the server checkpoints and exits. Returns once it has exited.
    pub fn stop_fast(&self) {
        self.server.stop(libc::SIGINT, STOP_TIMEOUT);
    }

    /// Immediate shutdown (SIGQUIT): backends exit without a word, so clients see the socket
    /// close; the next start runs crash recovery. Returns once the server has exited.
    pub fn stop_immediate(&self) {
        self.server.stop(libc::SIGQUIT, STOP_TIMEOUT);
    }

    /// Starts the stopped server again on the same port and data directory, and waits until it
    /// answers. Panics if it is running.
    pub fn start_again(&self) {
        self.daemon().spawn();
        if let Err(e) = self.wait_ready() {
            self.panic_not_ready(e);
        }
    }

    /// A primary with `schema` applied and a hot standby replicating it synchronously (an
    /// acknowledged commit is on both). Returns once the primary reports the standby as `sync`.
    pub async fn synchronous_pair(schema: &str) -> (PgServer, PgServer) {
        let primary = PgServer::primary_with(schema).await;
        let standby = primary.attach_synchronous_standby(primary.addr()).await;
        (primary, standby)
    }

    /// A primary (`synchronous_commit = on`) with `schema` applied, not yet synchronous.
    pub async fn primary_with(schema: &str) -> PgServer {
        let primary = PgServer::builder()
            .setting("synchronous_commit", "on")
            .start();
        primary.exec_admin(schema).await;
        primary
    }

    /// Starts a hot standby of this primary, replicating through `via` (this server's address,
    /// or a proxy in front of it), and makes it synchronous: the primary turns synchronous
    /// only once the standby is attached, since before that every commit would wait for it.
    /// Returns once the primary reports the standby as `sync`.
    pub async fn attach_synchronous_standby(&self, via: SocketAddr) -> PgServer {
        let standby = PgServer::builder()
            .setting("synchronous_commit", "on")
            .start_standby_via(via);
        self.exec_admin("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await;
        self.exec_admin("SELECT pg_reload_conf()").await;
        let mut admin: PgConnection = self.admin().await;
        let started = Instant::now();
        loop {
            let state: Option<String> =
                sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication LIMIT 1")
                    .fetch_optional(&mut admin)
                    .await
                    .unwrap();
            if state.as_deref() == Some("sync") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the standby never became synchronous ({state:?})\n--- standby log ---\n{}",
                standby.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = admin.close().await;
        standby
    }

    /// Promotes this standby to a primary (`pg_ctl promote`, waiting until it accepts writes).
    pub fn promote(&self) {
        let template = template();
        let mut promote = std::process::Command::new(template.bin.join("pg_ctl"));
        promote
            .arg("promote")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "20"]);
        process::as_user(&mut promote, template.user, self.dir());
        process::run_setup(promote, "pg_ctl promote");
    }

    /// The data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A new superuser connection beside whatever the test holds.
    ///
    /// Retries for up to 5 s while the server answers 53300 (full) or 57P03 (starting): a session
    /// the test just closed frees its slot only once its backend has exited, a moment later, and
    /// that race should not fail the test's own housekeeping.
    pub async fn admin<C: PgClient>(&self) -> C {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match C::open(self.url(), 1).await {
                Ok(conn) => return conn,
                Err(e) if e.busy && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("admin connection to {}: {}", self.url(), e.message),
            }
        }
    }

    /// Runs `sql` (one or more statements, simple protocol) on a new admin connection; panics on
    /// error.
    pub async fn exec_admin(&self, sql: &str) {
        let mut conn: PgConnection = self.admin().await;
        if let Err(e) = conn
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())))
            .await
        {
            panic!("admin SQL failed: {e}\n{sql}");
        }
        let _ = conn.close().await;
    }

    /// A pool of at most `max` connections. `acquire_timeout` is 5 s rather than sqlx's 30 s so
    /// that a test that takes the server down fails fast.
    pub async fn pool<P: PgClient>(&self, max: u32) -> P {
        P::open(self.url(), max)
            .await
            .unwrap_or_else(|e| panic!("pool for {}: {}", self.url(), e.message))
    }

    /// Terminates the backend `pid` (`pg_terminate_backend`) and waits until it has exited, so
    /// the very next query on that session gets 57P01.
    pub async fn terminate_backend(&self, pid: i32) {
        let mut conn: PgConnection = self.admin().await;
        // The timeout argument makes pg_terminate_backend wait for the backend to exit (PG 14+).
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
            .bind(pid)
            .fetch_one(&mut conn)
            .await
            .expect("pg_terminate_backend");
        let _ = conn.close().await;
        assert!(terminated, "backend {pid} not found or did not exit");
    }

    /// Terminates every client backend except those in `keep` (and the admin session doing it),
    /// waiting until they have exited. Returns how many were terminated.
    pub async fn terminate_backends_except(&self, keep: &[i32]) -> usize {
        let mut conn: PgConnection = self.admin().await;
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
             AND pid <> ALL($1)",
        )
        .bind(keep)
        .fetch_all(&mut conn)
        .await
        .expect("terminate backends");
        let _ = conn.close().await;
        terminated.into_iter().filter(|ok| *ok).count()
    }

    /// `tasks` concurrent callers make `per_task` calls each, `call(n)` with `n` numbering every
    /// call of the run, while backends are terminated as [`PgServer::kill_backends_every`] does.
    pub async fn calls_while_killing<F, Fut>(
        self: &Arc<Self>,
        every: Duration,
        per_round: Option<u32>,
        tasks: u32,
        per_task: u32,
        call: F,
    ) -> LoadOutcome
    where
        F: Fn(u32) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let started = Instant::now();
        let killer = self.kill_backends_every(every, per_round);
        let callers: Vec<_> = (0..tasks)
            .map(|task| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    for n in task * per_task..(task + 1) * per_task {
                        if let Err(failure) = call(n).await {
                            failures.push(failure);
                        }
                    }
                    failures
                })
            })
            .collect();
        let mut failures = Vec::new();
        for caller in callers {
            failures.extend(caller.await.expect("caller task"));
        }
        LoadOutcome {
            calls: tasks * per_task,
            failures,
            killed: killer.stop().await,
            elapsed: started.elapsed(),
        }
    }

    /// Terminates client backends in the background, `per_round` chosen at random (every one
    /// when `None`), every `every`, on one admin session, until [`BackendKiller::stop`].
    pub fn kill_backends_every(
        self: &Arc<Self>,
        every: Duration,
        per_round: Option<u32>,
    ) -> BackendKiller {
        let server = Arc::clone(self);
        let done = Arc::new(AtomicBool::new(false));
        let limit = per_round.map_or(String::new(), |n| format!("ORDER BY random() LIMIT {n}"));
        let sql = format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() {limit}) AS t \
             WHERE ok"
        );
        let task = tokio::spawn({
            let done = done.clone();
            async move {
                let mut admin: PgConnection = server.admin().await;
                let mut killed = 0u32;
                while !done.load(Ordering::Relaxed) {
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                        .fetch_one(&mut admin)
                        .await
                        .expect("terminate backends");
                    killed += n as u32;
                    tokio::time::sleep(every).await;
                }
                killed
            }
        });
        BackendKiller { done, task }
    }

    /// `ALTER SYSTEM SET max_connections = n`, then a fast restart (the setting needs one).
    /// Needs a free session slot for the admin connection.
    pub async fn set_max_connections(&self, n: u32) {
        assert!(n >= 1, "max_connections must be at least 1");
        self.exec_admin(&format!("ALTER SYSTEM SET max_connections = {n}"))
            .await;
        self.stop_fast();
        self.start_again();
    }

    fn wait_ready(&self) -> Result<(), NotReady> {
        wait_ready(self.daemon(), self.port())
    }

    fn panic_not_ready(&self, why: NotReady) -> ! {
        panic_not_ready(self.daemon(), &self.data, why)
    }
}

/// Polls until the server on `port` answers `SELECT 1`.
fn wait_ready(daemon: &Daemon, port: u16) -> Result<(), NotReady> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let url = url.as_str();
    daemon.wait_ready(READY_TIMEOUT, move || async move {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        if one == 1 {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one}"))
        }
    })
}

fn panic_not_ready(daemon: &Daemon, data: &Path, why: NotReady) -> ! {
    let why = match why {
        NotReady::Exited(status) => format!("postgres exited ({status})"),
        NotReady::TimedOut(last) => {
            format!("postgres not ready after {READY_TIMEOUT:?} (last error: {last})")
        }
    };
    panic!(
        "{why}; data dir {}\n--- server log ---\n{}",
        data.display(),
        daemon.log_tail(30)
    );
}

/// What [`PgServer::calls_while_killing`] saw.
pub struct LoadOutcome {
    pub calls: u32,
    /// The message of every call that failed.
    pub failures: Vec<String>,
    pub killed: u32,
    pub elapsed: Duration,
}

/// The background task of [`PgServer::kill_backends_every`].
pub struct BackendKiller {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u32>,
}

impl BackendKiller {
    /// Stops killing; returns how many backends were terminated.
    pub async fn stop(self) -> u32 {
        self.done.store(true, Ordering::Relaxed);
        self.task.await.expect("backend killer")
    }
}

/// Why a connection or pool could not be opened; `busy` when the server was full or starting.
pub struct OpenError {
    pub busy: bool,
    pub message: String,
}

/// A PostgreSQL connection or pool of either sqlx version, so that one suite drives both: the
/// type a test asks for (usually by passing it on) decides which.
pub trait PgClient: Sized + Send {
    /// A connection, or a pool of at most `max` connections with a 5 s `acquire_timeout`
    /// (rather than sqlx's 30 s, so that a test that takes the server down fails fast).
    fn open(url: String, max: u32) -> impl Future<Output = Result<Self, OpenError>> + Send;

    /// The backend process id, as `pg_stat_activity.pid` and `terminate_backend` know it.
    fn backend_pid(&mut self) -> impl Future<Output = i32> + Send;
}

macro_rules! pg_client {
    ($sqlx:ident) => {
        impl PgClient for $sqlx::postgres::PgConnection {
            async fn open(url: String, _max: u32) -> Result<Self, OpenError> {
                <Self as $sqlx::Connection>::connect(&url)
                    .await
                    .map_err(|e| {
                        let code = e.as_database_error().and_then(|e| e.code());
                        OpenError {
                            busy: matches!(code.as_deref(), Some("53300" | "57P03")),
                            message: e.to_string(),
                        }
                    })
            }

            async fn backend_pid(&mut self) -> i32 {
                $sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *self)
                    .await
                    .expect("SELECT pg_backend_pid()")
            }
        }

        impl PgClient for $sqlx::postgres::PgPool {
            async fn open(url: String, max: u32) -> Result<Self, OpenError> {
                $sqlx::postgres::PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&url)
                    .await
                    .map_err(|e| OpenError {
                        busy: false,
                        message: e.to_string(),
                    })
            }

            async fn backend_pid(&mut self) -> i32 {
                $sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&*self)
                    .await
                    .expect("SELECT pg_backend_pid()")
            }
        }
    };
}

pg_client!(sqlx);
pg_client!(sqlx08);

/// The backend process id of `conn`, as `pg_stat_activity.pid` and `terminate_backend` know it.
pub async fn backend_pid<C: PgClient>(conn: &mut C) -> i32 {
    conn.backend_pid().await
}
