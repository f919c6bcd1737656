//! A TCP proxy that puts network faults between a client and a database server.
//!
//! Point a client at [`FaultProxy::addr`] instead of the server and switch modes at any time:
//! resets (RST, as when a path or a server dies), a partition, latency, or resets after a number
//! of response bytes. It runs as tasks on the caller's tokio runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Upper bound (inclusive) of the random response-byte count after which
/// [`FaultProxy::reset_fraction`] resets a connection. Small enough to hit the connection
/// handshake or the first few results (a PostgreSQL startup reply is ~400 bytes).
pub const MAX_RANDOM_RESET_BYTES: u64 = 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Pass,
    ResetAfterBytes(u64),
    Latency(Duration),
    Blackhole,
    /// Bytes from clients are held; bytes from servers flow.
    HoldClientBytes,
    ResetFraction(f64),
    AroundClientBytes(&'static [u8], f64),
}

/// Counters since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Connections the proxy reset on purpose (`reset_all`, `reset_after_bytes`,
    /// `reset_fraction`, `reset_around`); resets passed on from either peer are not counted.
    pub resets: u64,
}

struct Shared {
    /// Where new connections go; [`FaultProxy::retarget`] moves it.
    target: Mutex<SocketAddr>,
    mode: watch::Sender<Mode>,
    /// Bumped by `reset_all`; a connection dies when it differs from its value at accept time.
    generation: watch::Sender<u64>,
    rng: Mutex<u64>,
    accepted: AtomicU64,
    resets: AtomicU64,
}

/// A fault-injecting TCP proxy on 127.0.0.1; stops (dropping its connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    reset_requests: mpsc::UnboundedSender<oneshot::Sender<usize>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `target`, in `pass` mode. Each client
    /// connection gets its own connection to `target`; if `target` refuses, the client (already
    /// accepted) is reset.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        let addr = listener.local_addr().expect("proxy local addr");
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            mode: watch::Sender::new(Mode::Pass),
            generation: watch::Sender::new(0),
            rng: Mutex::new(0),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let (reset_requests, reset_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(listener, shared.clone(), reset_rx));
        FaultProxy {
            addr,
            shared,
            reset_requests,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted from now on go to `target`, as after a VIP or DNS switch; those
    /// already open stay with the server they reached.
    pub fn retarget(&self, target: SocketAddr) {
        *self
            .shared
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// Forward everything unchanged (also ends a partition: held bytes then flow).
    pub fn pass(&self) {
        self.shared.mode.send_replace(Mode::Pass);
    }

    /// Resets every current connection (RST to both sides) and returns how many. Returns once
    /// they are all closed, so the next operation on any of them fails. Async for exactly that
    /// reason: a reset merely requested could lose the race with a query already on its way.
    /// The mode is unchanged: new connections are accepted as before.
    pub async fn reset_all(&self) -> usize {
        let (reply, done) = oneshot::channel();
        self.reset_requests
            .send(reply)
            .expect("proxy task is running");
        done.await.expect("proxy task is running")
    }

    /// Each connection accepted from now on is reset once `n` bytes have gone from the server to
    /// the client (`0`: right after accepting). Connections already open are not affected.
    pub fn reset_after_bytes(&self, n: u64) {
        self.shared.mode.send_replace(Mode::ResetAfterBytes(n));
    }

    /// Delays every chunk going from the server to the client by `delay`, on all connections, so
    /// a query round trip takes `delay` longer (more if the reply spans several reads).
    pub fn latency(&self, delay: Duration) {
        self.shared.mode.send_replace(Mode::Latency(delay));
    }

    /// A partition: connections are still accepted, but nothing moves in either direction, on
    /// new and open connections alike, until another mode is set. Bytes are held, not dropped,
    /// as TCP retransmission would deliver them once a real partition heals; clients see
    /// timeouts, never errors.
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// A one-way partition: what clients send is held (as a partition would hold it) while
    /// what servers send still arrives, on new and open connections alike, until another mode
    /// is set. Through it, a standby keeps receiving WAL but its acknowledgements never reach
    /// the primary.
    pub fn hold_client_bytes(&self) {
        self.shared.mode.send_replace(Mode::HoldClientBytes);
    }

    /// Each connection accepted from now on is, with probability `p`, reset after a random
    /// number of response bytes in `0..=MAX_RANDOM_RESET_BYTES`. The choices come from a
    /// generator seeded with `seed`, so a run is reproducible for a given order of connects.
    pub fn reset_fraction(&self, p: f64, seed: u64) {
        assert!((0.0..=1.0).contains(&p), "probability {p} not in 0..=1");
        *self
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = seed;
        self.shared.mode.send_replace(Mode::ResetFraction(p));
    }

    /// Whenever a client sends a chunk that holds `pattern` (a statement, say `b"COMMIT\0"`), the
    /// connection is, with probability `p`, reset: half of those times before the chunk reaches
    /// the server (it never runs), half right after (it runs, and its reply is lost). Applies to
    /// open and new connections alike; seeded as [`FaultProxy::reset_fraction`].
    pub fn reset_around(&self, pattern: &'static [u8], p: f64, seed: u64) {
        assert!((0.0..=1.0).contains(&p), "probability {p} not in 0..=1");
        assert!(!pattern.is_empty(), "an empty pattern matches everything");
        *self
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = seed;
        self.shared
            .mode
            .send_replace(Mode::AroundClientBytes(pattern, p));
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            resets: self.shared.resets.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl Shared {
    /// Where a new connection will be reset, decided at accept time from the mode.
    fn reset_point(&self) -> Option<u64> {
        let mode = *self.mode.borrow();
        match mode {
            Mode::ResetAfterBytes(n) => Some(n),
            Mode::ResetFraction(p) => {
                let mut state = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                // Top 53 bits as a uniform float in [0, 1).
                let roll = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                let bytes = splitmix64(&mut state) % (MAX_RANDOM_RESET_BYTES + 1);
                (roll < p).then_some(bytes)
            }
            Mode::Pass
            | Mode::Latency(_)
            | Mode::Blackhole
            | Mode::HoldClientBytes
            | Mode::AroundClientBytes(..) => None,
        }
    }

    /// A uniform draw in [0, 1) from the shared generator.
    fn roll(&self) -> f64 {
        let mut state = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a client chunk is cut off by [`FaultProxy::reset_around`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    Before,
    After,
}

/// A small, well-mixed PRNG step; plenty for picking which connections to break.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Both sides closed normally.
    Closed,
    /// Reset by `reset_all`.
    Killed,
    /// Reset by a reset point (`reset_after_bytes`, `reset_fraction`).
    Injected,
    /// An I/O error on either side, or the target refused; passed on to the other side as RST.
    Failed,
}

/// The accept loop. It owns every connection task, which is what lets `reset_all` wait for
/// exactly the connections that exist when it is asked.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut reset_requests: mpsc::UnboundedReceiver<oneshot::Sender<usize>>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Accept errors (e.g. EMFILE) are transient for a listener: keep serving.
                let Ok((client, _)) = accepted else { continue };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let reset_at = shared.reset_point();
                let generation = *shared.generation.borrow();
                connections.spawn(connection(client, shared.clone(), reset_at, generation));
            }
            Some(reply) = reset_requests.recv() => {
                shared.generation.send_modify(|g| *g += 1);
                // Every task ends now: open ones are killed, finished ones are merely reaped.
                let mut killed = 0;
                while let Some(outcome) = connections.join_next().await {
                    killed += usize::from(matches!(outcome, Ok(Outcome::Killed)));
                }
                let _ = reply.send(killed);
            }
            // Reap finished connections so the set does not grow in long chaos runs.
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn connection(
    mut client: TcpStream,
    shared: Arc<Shared>,
    reset_at: Option<u64>,
    generation: u64,
) -> Outcome {
    let mut server = None;
    let mut generations = shared.generation.subscribe();
    let outcome = tokio::select! {
        // Biased: a connection told to die must not forward one more chunk first.
        biased;
        Ok(_) = generations.wait_for(|g| *g != generation) => Outcome::Killed,
        outcome = forward(&mut client, &mut server, &shared, reset_at) => outcome,
    };
    if outcome != Outcome::Closed {
        // SO_LINGER 0 makes the close send RST instead of FIN: what a client sees when a
        // connection dies rather than ends.
        let _ = client.set_zero_linger();
        if let Some(server) = &server {
            let _ = server.set_zero_linger();
        }
    }
    if matches!(outcome, Outcome::Killed | Outcome::Injected) {
        shared.resets.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}

async fn forward(
    client: &mut TcpStream,
    server_slot: &mut Option<TcpStream>,
    shared: &Shared,
    reset_at: Option<u64>,
) -> Outcome {
    let mut mode = shared.mode.subscribe();
    healed(&mut mode).await;
    let target = *shared.target.lock().unwrap_or_else(PoisonError::into_inner);
    let Ok(server) = TcpStream::connect(target).await else {
        return Outcome::Failed;
    };
    let server = server_slot.insert(server);
    // Database protocols are chatty request/response; don't let Nagle add delays of our own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let upstream = pump(
        client_read,
        server_write,
        shared.mode.subscribe(),
        None,
        Some(shared),
    );
    let downstream = pump(server_read, client_write, mode, reset_at, None);
    match tokio::try_join!(upstream, downstream) {
        Ok(_) => Outcome::Closed,
        Err(outcome) => outcome,
    }
}

/// Copies one direction until EOF (then half-closes the other side, so the peer's reply can
/// still come back) or until `reset_at` bytes have been copied. `upstream` is set for the
/// client-to-server direction, which [`FaultProxy::reset_around`] watches.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut mode: watch::Receiver<Mode>,
    reset_at: Option<u64>,
    upstream: Option<&Shared>,
) -> Result<(), Outcome> {
    let downstream = upstream.is_none();
    let mut buf = vec![0u8; 16 * 1024];
    let mut copied = 0u64;
    loop {
        if reset_at.is_some_and(|limit| copied >= limit) {
            return Err(Outcome::Injected);
        }
        // During a partition, leave the bytes in the kernel's buffers.
        healed(&mut mode).await;
        if !downstream {
            let _ = mode.wait_for(|m| *m != Mode::HoldClientBytes).await;
        }
        let mut n = from.read(&mut buf).await.map_err(|_| Outcome::Failed)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        if let Some(limit) = reset_at {
            n = n.min(usize::try_from(limit - copied).unwrap_or(usize::MAX));
        }
        let current = *mode.borrow();
        let delay = match current {
            Mode::Latency(delay) if downstream => delay,
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let cut = match (current, upstream) {
            (Mode::AroundClientBytes(pattern, p), Some(shared))
                if buf[..n].windows(pattern.len()).any(|w| w == pattern) =>
            {
                let roll = shared.roll();
                (roll < p).then(|| {
                    if roll < p / 2.0 {
                        Cut::Before
                    } else {
                        Cut::After
                    }
                })
            }
            _ => None,
        };
        if cut == Some(Cut::Before) {
            return Err(Outcome::Injected);
        }
        // A partition that started while this chunk was in flight holds it too.
        healed(&mut mode).await;
        if !downstream {
            let _ = mode.wait_for(|m| *m != Mode::HoldClientBytes).await;
        }
        to.write_all(&buf[..n]).await.map_err(|_| Outcome::Failed)?;
        copied += n as u64;
        if cut == Some(Cut::After) {
            let _ = to.flush().await;
            return Err(Outcome::Injected);
        }
    }
}

/// Waits while the proxy is in blackhole mode.
async fn healed(mode: &mut watch::Receiver<Mode>) {
    // Err only when the proxy is being dropped, which aborts this task anyway.
    let _ = mode.wait_for(|m| *m != Mode::Blackhole).await;
}
