//! A throwaway PgBouncer in front of a throwaway PostgreSQL: Debian's `pgbouncer` binary, a
//! generated configuration in a temp dir, a free port, run as the `postgres` account (PgBouncer
//! refuses to run as root), stopped on drop.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::pg::PgServer;
use super::process::{self, Daemon, NotReady, PortLease, Server};

const PACKAGE_HINT: &str = "install the Debian package `pgbouncer` (apt-get install -y pgbouncer)";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// When PgBouncer gives a server connection back to its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// When the client disconnects: a client keeps one server connection throughout.
    Session,
    /// After each transaction (each statement outside one).
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// Options for [`PgBouncer`]; see [`PgBouncer::builder`].
#[derive(Clone, Debug)]
pub struct PgBouncerBuilder {
    target: SocketAddr,
    mode: PoolMode,
    ignore_extra_float_digits: bool,
    pool_size: u32,
    server_login_retry: u32,
}

impl PgBouncerBuilder {
    /// Session (the default) or transaction pooling.
    pub fn mode(mut self, mode: PoolMode) -> Self {
        self.mode = mode;
        self
    }

    /// Leave out `ignore_startup_parameters = extra_float_digits`, as a configuration written
    /// without sqlx in mind does: every sqlx connection is then refused.
    pub fn without_ignore_startup_parameters(mut self) -> Self {
        self.ignore_extra_float_digits = false;
        self
    }

    /// Server connections per database and user (`default_pool_size`, default 20).
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// Seconds PgBouncer waits after a failed server login before trying again (PgBouncer's
    /// default is 15; 1 by default here, so a restarted server is used again promptly).
    pub fn server_login_retry(mut self, seconds: u32) -> Self {
        self.server_login_retry = seconds;
        self
    }

    /// Starts PgBouncer and waits until a `SELECT 1` through it succeeds (so the target must be
    /// up, and the configuration must accept sqlx).
    pub fn start(self) -> PgBouncer {
        let bouncer = self.spawn();
        if let Err(why) = bouncer.wait_ready() {
            bouncer.panic_not_ready(why);
        }
        bouncer
    }

    /// Starts PgBouncer and waits only until it listens: for configurations that refuse sqlx.
    pub fn start_listening(self) -> PgBouncer {
        let bouncer = self.spawn();
        let addr = bouncer.addr();
        let listening = bouncer
            .daemon()
            .wait_ready(READY_TIMEOUT, move || async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = listening {
            bouncer.panic_not_ready(why);
        }
        bouncer
    }

    fn spawn(self) -> PgBouncer {
        let program = process::find_on_path("pgbouncer", &["/usr/sbin"])
            .map(|dir| dir.join("pgbouncer"))
            .unwrap_or_else(|| {
                panic!("pgbouncer was found neither on PATH nor in /usr/sbin; {PACKAGE_HINT}")
            });
        let user = process::service_user("postgres", "postgresql");
        let dir = process::owned_tempdir("db-retry-pgbouncer-", user);
        let port = PortLease::new();
        let config = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("write userlist.txt");
        let ignore = if self.ignore_extra_float_digits {
            "ignore_startup_parameters = extra_float_digits\n"
        } else {
            ""
        };
        let ini = format!(
            "[databases]\n\
             postgres = host={host} port={target_port} dbname=postgres user=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = {mode}\n\
             {ignore}\
             default_pool_size = {pool_size}\n\
             max_client_conn = 1000\n\
             server_login_retry = {retry}\n\
             admin_users = postgres\n\
             pidfile = {pidfile}\n",
            host = self.target.ip(),
            target_port = self.target.port(),
            port = port.port(),
            users = users.display(),
            mode = self.mode.as_str(),
            pool_size = self.pool_size,
            retry = self.server_login_retry,
            pidfile = dir.path().join("pgbouncer.pid").display(),
        );
        std::fs::write(&config, ini).expect("write pgbouncer.ini");
        process::chown(&config, user);
        process::chown(&users, user);
        let daemon = Daemon::new(
            "pgbouncer",
            program,
            vec![OsString::from(config.as_os_str())],
            user,
            dir.path().to_owned(),
            dir.path().join("pgbouncer.log"),
            libc::SIGKILL,
        );
        daemon.spawn();
        PgBouncer {
            // SIGINT: PgBouncer's immediate shutdown.
            server: Server::new(port, daemon, libc::SIGINT, dir),
            config,
            mode: self.mode,
        }
    }
}

/// A PgBouncer of the test's own, on 127.0.0.1 and a free port, pooling the `postgres` database
/// of one throwaway PostgreSQL with trust authentication. Dropping it stops it and removes its
/// files.
pub struct PgBouncer {
    server: Server,
    config: PathBuf,
    mode: PoolMode,
}

impl std::ops::Deref for PgBouncer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl PgBouncer {
    /// Options for a PgBouncer in front of `target`: session mode, `extra_float_digits`
    /// ignored, 20 server connections, `server_login_retry = 1`.
    pub fn builder(target: &PgServer) -> PgBouncerBuilder {
        PgBouncerBuilder {
            target: target.addr(),
            mode: PoolMode::Session,
            ignore_extra_float_digits: true,
            pool_size: 20,
            server_login_retry: 1,
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/postgres", self.addr())
    }

    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The generated configuration file.
    pub fn config(&self) -> &std::path::Path {
        &self.config
    }

    fn wait_ready(&self) -> Result<(), NotReady> {
        let url = self.url();
        let url = url.as_str();
        self.daemon().wait_ready(READY_TIMEOUT, move || async move {
            let mut conn = PgConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .persistent(false)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(())
        })
    }

    fn panic_not_ready(&self, why: NotReady) -> ! {
        let why = match why {
            NotReady::Exited(status) => format!("pgbouncer exited ({status})"),
            NotReady::TimedOut(last) => {
                format!("pgbouncer not ready after {READY_TIMEOUT:?} (last error: {last})")
            }
        };
        panic!(
            "{why}; config {}\n--- pgbouncer log ---\n{}",
            self.config.display(),
            self.log_tail(30)
        );
    }
}
