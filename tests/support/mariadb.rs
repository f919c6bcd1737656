//! A throwaway MariaDB server per test, built like [`PgServer`](super::pg::PgServer): one
//! `mariadb-install-db` template per test process (~0.6 s), copied per server, `mariadbd` started
//! directly with a parent-death signal on a free port. The machine's own MariaDB (port 3306,
//! /etc/mysql) is never touched: `--no-defaults` keeps its config files out.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor};

use super::process::{self, Daemon, NotReady, PortLease, Server, ServiceUser};

const PACKAGE_HINT: &str =
    "install the Debian package `mariadb-server` (apt-get install -y mariadb-server)";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Durability off (throwaway data) and small buffers (several servers may run at once). Given to
/// both the installer and the server so the redo log is created at the size the server expects.
const TUNING: &[&str] = &[
    "--skip-log-bin",
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-flush-method=nosync",
];

struct Template {
    server: PathBuf,
    data: PathBuf,
    user: Option<ServiceUser>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let server = find_binary(&["mariadbd", "mysqld"], &["/usr/sbin"]);
        let installer = find_binary(&["mariadb-install-db", "mysql_install_db"], &["/usr/bin"]);
        let user = process::service_user("mysql", "mariadb-server");
        let dir = process::owned_tempdir("db-retry-mariadb-template-", user);
        let data = dir.path().join("data");
        let mut install = Command::new(installer);
        install
            // Must come first; keeps /etc/mysql (the system server's config) out.
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            // root gets an empty password usable over TCP (root@127.0.0.1), instead of
            // unix_socket authentication.
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(TUNING);
        process::as_user(&mut install, user, dir.path());
        process::run_setup(install, "mariadb-install-db");
        process::remove_at_exit(dir);
        Template { server, data, user }
    })
}

fn find_binary(names: &[&str], extra_dirs: &[&str]) -> PathBuf {
    names
        .iter()
        .find_map(|name| process::find_on_path(name, extra_dirs).map(|dir| dir.join(name)))
        .unwrap_or_else(|| {
            panic!(
                "MariaDB binary {} not found on PATH or in {extra_dirs:?}; {PACKAGE_HINT}",
                names.join(" / ")
            )
        })
}

/// Options for [`MariaDbServer`]; see [`MariaDbServer::builder`].
#[derive(Clone, Debug)]
pub struct MariaDbServerBuilder {
    max_connections: u32,
    options: Vec<String>,
}

impl MariaDbServerBuilder {
    /// `--max-connections` (default 151). MariaDB lets one more connection in for a user with
    /// SUPER, which root is, so the (n+2)th session gets error 1040. MariaDB raises values below
    /// 10 to 10 with only a log warning, so smaller values are refused here.
    pub fn max_connections(mut self, n: u32) -> Self {
        assert!(n >= 10, "MariaDB's smallest max_connections is 10, not {n}");
        self.max_connections = n;
        self
    }

    /// Any other `mariadbd` option, e.g. `.option("--innodb-lock-wait-timeout=1")`.
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_owned());
        self
    }

    /// Starts the server and waits until it answers; the database `test` exists.
    pub fn start(self) -> MariaDbServer {
        let template = template();
        let dir = process::owned_tempdir("db-retry-mariadb-", template.user);
        let data = dir.path().join("data");
        process::copy_tree(&template.data, &data);
        let mut daemon = Daemon::new(
            "mariadbd",
            template.server.clone(),
            Vec::new(),
            template.user,
            dir.path().to_owned(),
            dir.path().join("server.log"),
            // Nothing to save in a throwaway server; InnoDB recovers if it is started again.
            libc::SIGKILL,
        );
        // See PgServerBuilder::start: the probed port may be taken before the server binds it.
        let mut attempts = 1;
        let port = loop {
            let port = PortLease::new();
            daemon.set_args(self.args(&data, dir.path(), port.port()));
            daemon.spawn();
            match wait_ready(&daemon, port.port()) {
                Ok(()) => break port,
                Err(NotReady::Exited(_))
                    if attempts < 5 && daemon.log_contains("already in use") =>
                {
                    attempts += 1;
                }
                Err(e) => panic_not_ready(&daemon, e),
            }
        };
        MariaDbServer {
            // Nothing to save in a throwaway server.
            server: Server::new(port, daemon, libc::SIGKILL, dir),
        }
    }

    fn args(&self, data: &Path, dir: &Path, port: u16) -> Vec<OsString> {
        let mut args: Vec<String> = vec![
            // Must come first; keeps /etc/mysql (the system server's config) out.
            "--no-defaults".into(),
            format!("--datadir={}", data.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--skip-networking=0".into(),
            format!("--socket={}", dir.join("mariadbd.sock").display()),
            format!("--pid-file={}", dir.join("mariadbd.pid").display()),
            format!("--tmpdir={}", dir.display()),
            // Clients come from 127.0.0.1, which matches root@127.0.0.1 without DNS.
            "--skip-name-resolve".into(),
            format!("--max-connections={}", self.max_connections),
        ];
        args.extend(TUNING.iter().map(|s| s.to_string()));
        args.extend(self.options.iter().cloned());
        args.into_iter().map(OsString::from).collect()
    }
}

/// A MariaDB server of the test's own on 127.0.0.1 and a free port; user `root` without a
/// password. Dropping it kills the server and removes its files, also when the test panics.
pub struct MariaDbServer {
    server: Server,
}

impl std::ops::Deref for MariaDbServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl MariaDbServer {
    pub fn start() -> MariaDbServer {
        MariaDbServer::builder().start()
    }

    pub fn builder() -> MariaDbServerBuilder {
        MariaDbServerBuilder {
            max_connections: 151,
            options: Vec::new(),
        }
    }

    /// `mysql://root@127.0.0.1:PORT/test`
    pub fn url(&self) -> String {
        self.url_via(self.addr())
    }

    /// The URL of this server's `test` database reached through `addr` (e.g. a `FaultProxy`).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("mysql://root@{addr}/test")
    }

    /// Normal shutdown (SIGTERM): connections are killed, InnoDB shuts down cleanly.
    pub fn stop_fast(&self) {
        self.server.stop(libc::SIGTERM, STOP_TIMEOUT);
    }

    /// SIGKILL: connections see the socket close; the next start runs InnoDB recovery.
    pub fn stop_immediate(&self) {
        self.server.stop(libc::SIGKILL, STOP_TIMEOUT);
    }

    /// Starts the stopped server again on the same port and data directory.
    pub fn start_again(&self) {
        self.daemon().spawn();
        if let Err(e) = wait_ready(self.daemon(), self.port()) {
            panic_not_ready(self.daemon(), e);
        }
    }

    /// A new root connection beside whatever the test holds. Retries for up to 5 s on error 1040
    /// (too many connections; see `PgServer::admin`).
    pub async fn admin(&self) -> MySqlConnection {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match MySqlConnection::connect(&self.url()).await {
                Ok(conn) => return conn,
                Err(e) if mysql_error_number(&e) == Some(1040) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("admin connection to {}: {e}", self.url()),
            }
        }
    }

    /// Runs `sql` (one or more statements) on a new admin connection; panics on error.
    pub async fn exec_admin(&self, sql: &str) {
        let mut conn = self.admin().await;
        if let Err(e) = conn
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())))
            .await
        {
            panic!("admin SQL failed: {e}\n{sql}");
        }
        let _ = conn.close().await;
    }

    /// A pool of at most `max` connections with a 5 s acquire timeout (see `PgServer::pool`).
    pub async fn pool(&self, max: u32) -> MySqlPool {
        MySqlPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("pool for {}: {e}", self.url()))
    }
}

/// The MySQL error number (`code()` is the SQLSTATE, which 1040 does not have).
pub fn mysql_error_number(error: &sqlx::Error) -> Option<u16> {
    error
        .as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|e| e.number())
}

/// Polls until the server on `port` takes a connection, and creates the `test` database the URL
/// names (a fresh install has none).
fn wait_ready(daemon: &Daemon, port: u16) -> Result<(), NotReady> {
    let url = format!("mysql://root@127.0.0.1:{port}");
    let url = url.as_str();
    daemon.wait_ready(READY_TIMEOUT, move || async move {
        let mut conn = MySqlConnection::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        conn.execute("CREATE DATABASE IF NOT EXISTS test")
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        Ok(())
    })
}

fn panic_not_ready(daemon: &Daemon, why: NotReady) -> ! {
    let why = match why {
        NotReady::Exited(status) => format!("mariadbd exited ({status})"),
        NotReady::TimedOut(last) => {
            format!("mariadbd not ready after {READY_TIMEOUT:?} (last error: {last})")
        }
    };
    panic!("{why}\n--- server log ---\n{}", daemon.log_tail(30));
}
