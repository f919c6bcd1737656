//! What the happy-path benches share: a `poll` boundary the compiler may not inline, and the
//! medians criterion wrote in this run.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `F` through a call that is never inlined, so a bench can measure every variant behind
/// the same out-of-line boundary.
pub struct OutOfLine<F>(pub F);

impl<F: Future> Future for OutOfLine<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the field is pinned whenever `self` is: it is never moved out of, and
        // `OutOfLine` has no `Drop` impl and no `Unpin` impl of its own.
        unsafe { self.map_unchecked_mut(|this| &mut this.0) }.poll(cx)
    }
}

/// Criterion's point estimate of the median, in ns, for `group/name` from this run, under the
/// target directory of the package at `manifest_dir` (or `CARGO_TARGET_DIR`).
pub fn median_ns(manifest_dir: &str, group: &str, name: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(manifest_dir).join("target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let median = text.split("\"median\"").nth(1)?;
    let point = median.split("\"point_estimate\":").nth(1)?;
    point.split([',', '}']).next()?.trim().parse().ok()
}

/// A table row's cells for a set of runs in ms: the runs as measured, their median and the worst.
pub fn runs_median_worst(mut runs: Vec<f64>) -> (String, f64, f64) {
    let shown: Vec<String> = runs.iter().map(|run| format!("{run:.0}")).collect();
    runs.sort_by(f64::total_cmp);
    let median = runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = runs.last().copied().unwrap_or(f64::NAN);
    (shown.join(", "), median, worst)
}
