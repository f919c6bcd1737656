//! The delay before each retry: growth, cap and jitter.

use std::time::Duration;

use crate::policy::{Backoff, Jitter, RetryPolicy};

/// The delays of one call, drawn one retry at a time.
///
/// Holds the previous delay (decorrelated jitter grows from it) and the random number generator,
/// which is only created when the first delay is drawn, so a call that never fails never seeds
/// one.
#[derive(Debug)]
pub(crate) struct Schedule {
    previous: Duration,
    rng: Option<fastrand::Rng>,
}

impl Schedule {
    pub(crate) const fn new() -> Self {
        Schedule {
            previous: Duration::ZERO,
            rng: None,
        }
    }

    /// The delay before retry number `retry` (0 for the first retry).
    pub(crate) fn next_delay(&mut self, policy: &RetryPolicy, retry: u32) -> Duration {
        let ceiling = match policy.backoff {
            Backoff::None => return Duration::ZERO,
            Backoff::Fixed => policy.base.min(policy.cap),
            Backoff::Exponential => exponential(policy.base, policy.cap, retry),
        };
        let delay = match policy.jitter {
            Jitter::None => ceiling,
            Jitter::Full => self.uniform(policy, Duration::ZERO, ceiling),
            Jitter::Equal => {
                let half = ceiling / 2;
                half + self.uniform(policy, Duration::ZERO, ceiling - half)
            }
            Jitter::Decorrelated => {
                let previous = if retry == 0 {
                    policy.base
                } else {
                    self.previous
                };
                let upper = previous.saturating_mul(3).max(policy.base);
                self.uniform(policy, policy.base, upper).min(policy.cap)
            }
        };
        self.previous = delay;
        delay
    }

    fn uniform(&mut self, policy: &RetryPolicy, low: Duration, high: Duration) -> Duration {
        let rng = self.rng.get_or_insert_with(|| match policy.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        });
        let low = saturating_nanos(low);
        let high = saturating_nanos(high).max(low);
        Duration::from_nanos(rng.u64(low..=high))
    }
}

/// `base · 2^retry`, never above `cap`, without overflow however large `retry` is.
pub(crate) fn exponential(base: Duration, cap: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |delay| delay.min(cap))
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_then_caps() {
        let ms = Duration::from_millis;
        let delays: Vec<_> = (0..8).map(|n| exponential(ms(100), ms(5000), n)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
                .map(ms)
                .to_vec()
        );
    }

    #[test]
    fn exponential_survives_huge_retry_numbers() {
        let d = exponential(Duration::from_secs(1), Duration::from_secs(7), 99);
        assert_eq!(d, Duration::from_secs(7));
    }
}
