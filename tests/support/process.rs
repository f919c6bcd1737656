//! What the PostgreSQL and MariaDB harnesses share: running a database server as its service user,
//! tying its life to the test process, free ports, readiness polling and cleanup at exit.

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::fs::OpenOptions;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, Once, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// `PATH` for the server processes, whose environment is cleared so that a `PGPORT`, `PGDATA` or
/// `MYSQL_*` variable of whoever runs the tests cannot change them. The install scripts need the
/// usual tools (`hostname`, `cat`) from it.
const SERVER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The account a server runs as: database servers refuse to run as root, and tests often do.
#[derive(Clone, Copy, Debug)]
pub struct ServiceUser {
    pub uid: u32,
    pub gid: u32,
}

/// When running as root, the system account `name` (which the Debian package `package` creates);
/// otherwise `None`, meaning the server runs as the current user.
pub fn service_user(name: &str, package: &str) -> Option<ServiceUser> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let cname = CString::new(name).expect("user name without NUL");
    // The reentrant lookup: the PostgreSQL and MariaDB templates may be built at the same moment
    // on two test threads, and getpwnam's static record would be shared between them.
    // SAFETY: passwd is plain C data, for which all-zero is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are to live locals, and `buf.len()` is the buffer's real size.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        panic!(
            "running as root, but the system user `{name}` does not exist; the servers cannot run \
             as root. Install the Debian package `{package}` (it creates the user)"
        );
    }
    let (uid, gid) = (entry.pw_uid, entry.pw_gid);
    Some(ServiceUser { uid, gid })
}

/// Runs `command` as `user` (if any) with a clean environment in `dir`.
pub fn as_user(command: &mut Command, user: Option<ServiceUser>, dir: &Path) {
    command
        .env_clear()
        .env("PATH", SERVER_PATH)
        .env("LC_ALL", "C")
        .current_dir(dir);
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
}

/// A temp dir owned by `user`, so that the server running as that user can write in it. Root can
/// still remove it.
pub fn owned_tempdir(prefix: &str, user: Option<ServiceUser>) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("create temp dir");
    chown(dir.path(), user);
    dir
}

/// Where server directories go: /dev/shm when it is there with room to spare, else the usual
/// temp dir. Measured on this kind of VM: copying a 30 MB data directory into the ext4 /tmp takes
/// 1-1.5 s of kernel time, into tmpfs 0.06 s; and the data is thrown away anyway. (Containers
/// often have a 64 MB /dev/shm, hence the free-space check.)
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if free_bytes(shm).is_some_and(|free| free >= 2 << 30) {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    })
}

fn free_bytes(path: &Path) -> Option<u64> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(cpath.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

pub fn chown(path: &Path, user: Option<ServiceUser>) {
    if let Some(user) = user {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Copies a directory tree keeping owners and modes (`cp -a`), which is what makes a copied
/// PostgreSQL data directory acceptable to the server (owned by it, mode 0700).
pub fn copy_tree(from: &Path, to: &Path) {
    let output = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("run cp");
    assert!(
        output.status.success(),
        "cp -a {} {} failed: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a short-lived setup command (initdb, mariadb-install-db) and panics with its output when
/// it fails.
pub fn run_setup(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// First directory among `PATH` and `extra` holding an executable called `name`.
pub fn find_on_path(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .find(|dir| is_executable(&dir.join(name)))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Temp dirs that must outlive every test in the binary (the initdb templates).

static REMOVE_AT_EXIT: Mutex<Vec<TempDir>> = Mutex::new(Vec::new());

/// Keeps `dir` until the test process exits, then removes it. Statics are never dropped, so a
/// template held in a `OnceLock` would otherwise be left behind by every test run; `atexit` runs
/// both when libtest's main returns and when it calls `process::exit` after a failure.
pub fn remove_at_exit(dir: TempDir) -> PathBuf {
    static REGISTER: Once = Once::new();
    extern "C" fn remove_all() {
        let dirs = std::mem::take(
            &mut *REMOVE_AT_EXIT
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(dirs);
    }
    REGISTER.call_once(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_all) };
    });
    let path = dir.path().to_owned();
    REMOVE_AT_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir);
    path
}

// ---------------------------------------------------------------------------------------------
// Ports.

static PORTS_IN_USE: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free TCP port on 127.0.0.1, reserved against the other servers of this test process until
/// dropped. The kernel may hand a just-released ephemeral port out again, so two servers started
/// at the same moment could otherwise be given the same one. (Another process can still take it
/// between our probe and the server's bind; the harnesses retry on "Address already in use".)
pub struct PortLease(u16);

impl PortLease {
    pub fn new() -> PortLease {
        for _ in 0..100 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind 127.0.0.1:0")
                .port();
            if PORTS_IN_USE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(port)
            {
                return PortLease(port);
            }
        }
        panic!("no free port on 127.0.0.1 after 100 tries");
    }

    pub fn port(&self) -> u16 {
        self.0
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        PORTS_IN_USE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes.

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. Test
/// threads end after their test and tokio's blocking threads after 10 s idle, either of which
/// would kill a server that is still in use; this thread never ends, so the signal comes exactly
/// when the test process dies (including SIGKILL and abort, where no destructor runs).
fn spawn_from_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("db-server-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((command, reply_tx))
        .expect("spawner thread alive");
    reply_rx.recv().expect("spawner thread alive")
}

/// A server process that can be stopped with a signal and started again with the same command.
pub struct Daemon {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    user: Option<ServiceUser>,
    dir: PathBuf,
    log: PathBuf,
    death_signal: libc::c_int,
    child: Mutex<Option<Child>>,
}

/// Why a server did not become ready.
pub enum NotReady {
    Exited(ExitStatus),
    TimedOut(String),
}

impl Daemon {
    /// `death_signal` is what the server gets when the test process dies; stdout and stderr are
    /// appended to `log`.
    pub fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<OsString>,
        user: Option<ServiceUser>,
        dir: PathBuf,
        log: PathBuf,
        death_signal: libc::c_int,
    ) -> Daemon {
        Daemon {
            name,
            program,
            args,
            user,
            dir,
            log,
            death_signal,
            child: Mutex::new(None),
        }
    }

    pub fn set_args(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn spawn(&self) {
        let mut child = self.lock();
        if let Some(running) = child.as_mut() {
            // One that exited by itself (a crash, a test's own kill) may be started again.
            assert!(
                running.try_wait().expect("try_wait").is_some(),
                "{} is already running; stop it before starting it again",
                self.name
            );
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        as_user(&mut command, self.user, &self.dir);
        let signal = self.death_signal;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes two syscalls and builds
        // an io::Error from a raw code (no allocation). std runs it after setuid, which matters:
        // a credential change clears the parent-death signal.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect; then nobody would signal us.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let spawned = spawn_from_long_lived_thread(command)
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.program.display()));
        *child = Some(spawned);
    }

    /// `Some(status)` once the process has exited (and then it counts as stopped).
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut guard = self.lock();
        let status = guard.as_mut()?.try_wait().expect("try_wait")?;
        *guard = None;
        Some(status)
    }

    pub fn is_running(&self) -> bool {
        let mut guard = self.lock();
        let Some(child) = guard.as_mut() else {
            return false;
        };
        if let Ok(None) = child.try_wait() {
            return true;
        }
        *guard = None;
        false
    }

    /// Sends `signal` and waits for the process to exit; after `timeout` it is killed (SIGKILL)
    /// and `Err` says so. `Ok(None)` when it was not running.
    pub fn stop(
        &self,
        signal: libc::c_int,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, String> {
        let mut guard = self.lock();
        let Some(child) = guard.as_mut() else {
            return Ok(None);
        };
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet (we hold it).
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                *guard = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                *guard = None;
                return Err(format!(
                    "{} did not exit within {timeout:?} of signal {signal}; killed it",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Polls `probe` (on a runtime of its own, so this works from sync and async callers alike)
    /// until it succeeds, the server exits, or `timeout` passes.
    pub fn wait_ready<F, Fut>(&self, timeout: Duration, probe: F) -> Result<(), NotReady>
    where
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let deadline = Instant::now() + timeout;
        block_on_side_thread(async {
            loop {
                if let Some(status) = self.exited() {
                    return Err(NotReady::Exited(status));
                }
                // A probe can hang if the server accepts but never answers; bound each one.
                let error = match tokio::time::timeout(Duration::from_secs(2), probe()).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => e,
                    Err(_) => "probe timed out after 2s".into(),
                };
                if Instant::now() >= deadline {
                    return Err(NotReady::TimedOut(error));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
            .unwrap_or(false)
    }
}

impl Drop for Daemon {
    /// Backstop: the servers stop their daemon themselves, but a daemon must never outlive its
    /// owner (e.g. when a constructor panics half-way).
    fn drop(&mut self) {
        let _ = self.stop(libc::SIGKILL, Duration::from_secs(10));
    }
}

/// Runs `future` to completion on a fresh current-thread runtime on another thread. Blocking the
/// caller's thread is the point (readiness checks from sync code); a separate thread is needed
/// because a runtime cannot be started inside a runtime.
pub fn block_on_side_thread<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build tokio runtime")
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

// ---------------------------------------------------------------------------------------------
// What every throwaway server is made of.

/// A started server: its reserved port, its process and the directory it lives in. `PgServer`
/// and `MariaDbServer` dereference to it for what they have in common.
pub struct Server {
    port: PortLease,
    daemon: Daemon,
    /// The signal that ends the server when it is dropped.
    drop_signal: libc::c_int,
    // Last: removed after the server has stopped (see Drop).
    dir: TempDir,
}

impl Server {
    pub fn new(port: PortLease, daemon: Daemon, drop_signal: libc::c_int, dir: TempDir) -> Self {
        Server {
            port,
            daemon,
            drop_signal,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port.port()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends `signal` and returns once the server has exited; panics with its log otherwise.
    pub fn stop(&self, signal: libc::c_int, timeout: Duration) {
        match self.daemon.stop(signal, timeout) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the server on port {} is not running", self.port()),
            Err(e) => panic!("{e}\n--- server log ---\n{}", self.daemon.log_tail(30)),
        }
    }

    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// The server's log so far (its last `lines` lines), for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never panic in drop (it may run during a test's unwinding); the Daemon kills on
        // timeout.
        let _ = self.daemon.stop(self.drop_signal, Duration::from_secs(20));
    }
}
