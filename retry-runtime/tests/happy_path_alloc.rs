//! The happy path allocates nothing: a call whose first attempt succeeds costs no heap
//! allocation in the retry machinery, whether it goes through `retry`, a `Retrier` by hand, or
//! the code `#[db_retry]` generates.
//!
//! A counting global allocator counts only while the current thread has opened a counting
//! window, so the test harness and the runtime's setup don't count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use db_retry_runtime::{retry, retry_with, Classify, Retrier, RetryPolicy};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` unchanged; counting touches only an atomic and a
// const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Only one counting window at a time, so the shared counter belongs to one test.
static WINDOW: Mutex<()> = Mutex::new(());

/// A counting window on the current thread; call [`Window::close`] to read the count.
struct Window {
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl Window {
    fn open() -> Self {
        let exclusive = WINDOW
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.with(|c| c.set(true));
        Window {
            _exclusive: exclusive,
        }
    }

    fn close(self) -> usize {
        COUNTING.with(|c| c.set(false));
        ALLOCATIONS.load(Ordering::SeqCst)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        COUNTING.with(|c| c.set(false));
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn counting_allocator_sees_allocations_inside_the_window() {
    // The harness must be able to fail: a Box inside the window is counted.
    let window = Window::open();
    drop(black_box(Box::new(7u64)));
    assert_eq!(window.close(), 1);
}

#[test]
fn retry_on_first_success_allocates_nothing() {
    let policy = RetryPolicy::default();
    let runtime = current_thread_runtime();
    let (sum, allocations) = runtime.block_on(async {
        let mut window = None;
        let mut sum = 0u64;
        for call in 0..=1000 {
            // The first call of a function registers its attempts counter (`metrics`): once.
            if call == 1 {
                window = Some(Window::open());
            }
            let value = retry(black_box(&policy), || async { Ok::<_, sqlx::Error>(1u64) }).await;
            sum += black_box(value).unwrap();
        }
        (sum, window.unwrap().close())
    });
    assert_eq!(sum, 1001);
    assert_eq!(allocations, 0, "the happy path of retry() allocated");
}

#[test]
fn retry_with_a_deadline_on_first_success_allocates_nothing() {
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let runtime = current_thread_runtime();
    let allocations = runtime.block_on(async {
        let mut window = None;
        for call in 0..=1000 {
            if call == 1 {
                window = Some(Window::open());
            }
            let value = retry_with(
                black_box(&policy),
                |e: &sqlx::Error| e.classify(),
                || async { Ok::<_, sqlx::Error>(1u64) },
            )
            .await;
            assert_eq!(black_box(value).ok(), Some(1));
        }
        window.unwrap().close()
    });
    assert_eq!(allocations, 0, "the happy path with a deadline allocated");
}

/// The attribute's expansion, reaching this crate through `crate =` as a re-exporter would.
#[db_retry_macros::db_retry(crate = db_retry_runtime)]
async fn annotated(value: u64) -> Result<u64, sqlx::Error> {
    Ok(black_box(value) + 1)
}

#[db_retry_macros::db_retry(crate = db_retry_runtime, deadline = 30s)]
async fn annotated_with_deadline(value: u64) -> Result<u64, sqlx::Error> {
    Ok(black_box(value) + 1)
}

#[test]
fn db_retry_function_on_first_success_allocates_nothing() {
    let runtime = current_thread_runtime();
    let (sum, allocations) = runtime.block_on(async {
        // The first call of each registers its attempts counter (`metrics`): once.
        annotated(0).await.unwrap();
        annotated_with_deadline(0).await.unwrap();
        let window = Window::open();
        let mut sum = 0u64;
        for n in 0..1000 {
            sum += annotated(n).await.unwrap();
            sum += annotated_with_deadline(n).await.unwrap();
        }
        (sum, window.close())
    });
    assert_eq!(sum, 2 * (1000 * 999 / 2 + 1000));
    assert_eq!(
        allocations, 0,
        "the happy path of a #[db_retry] function allocated"
    );
}

#[test]
fn retrier_by_hand_on_first_success_allocates_nothing() {
    let policy = RetryPolicy::default();
    let window = Window::open();
    for _ in 0..1000 {
        let retrier = Retrier::new(black_box(&policy), "by_hand");
        retrier.succeeded();
        assert_eq!(black_box(&retrier).retries(), 0);
    }
    assert_eq!(window.close(), 0, "Retrier::new + succeeded() allocated");
}

#[test]
fn retrier_without_a_deadline_holds_no_start_instant() {
    // The start instant is taken only when the policy has a deadline; without one, no clock is
    // read. `Retrier` keeps it in a private field, visible through `Debug`.
    let without = RetryPolicy::default();
    let retrier = Retrier::new(&without, "no_deadline");
    let debug = format!("{retrier:?}");
    assert!(debug.contains("started: None"), "{debug}");

    let with = RetryPolicy::builder()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let retrier = Retrier::new(&with, "deadline");
    let debug = format!("{retrier:?}");
    assert!(debug.contains("started: Some("), "{debug}");
}

#[test]
fn retrier_without_a_deadline_works_outside_any_runtime() {
    let policy = RetryPolicy::default();
    let mut retrier = Retrier::new(&policy, "no_runtime");
    let error = sqlx::Error::PoolTimedOut;
    let delay = retrier.retry_after(&error, error.classify());
    assert!(delay.is_some_and(|d| d <= policy.base()));
    assert_eq!(retrier.retries(), 1);
    retrier.succeeded();
}

#[test]
fn call_that_fails_once_still_returns_ok_after_one_retry() {
    let policy = RetryPolicy::default();
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        tokio::time::pause();
        let mut attempts = 0u32;
        let value = retry(&policy, || {
            attempts += 1;
            let first = attempts == 1;
            async move {
                if first {
                    Err(sqlx::Error::PoolTimedOut)
                } else {
                    Ok(42)
                }
            }
        })
        .await;
        assert_eq!(value.unwrap(), 42);
        assert_eq!(attempts, 2);
    });
}
