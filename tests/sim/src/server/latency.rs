//! Request latency histograms for `/sim/stats`: a fixed log-linear histogram of atomics per stats
//! row (four buckets per power of two of microseconds, so a quantile read from it is at most 25%
//! above the true value), observed without a lock when a request's response is ready, and merged
//! into summaries (count, mean, p50/p90/p99, max) when the stats are served. Also the runtime
//! probe: how late a task sleeping `PROBE_PERIOD` is woken, which is how long a ready request waits
//! for a worker thread before any of kube-sim's code sees it.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SimState;

/// How often the runtime probe sleeps and wakes.
pub const PROBE_PERIOD: Duration = Duration::from_millis(20);

/// Records, every `PROBE_PERIOD`, how much later than asked a sleeping task was woken (the timer's
/// 1 ms granularity included) into `state.runtime_lag`.
pub async fn probe_runtime(state: Arc<SimState>) {
    loop {
        let asked = Instant::now();
        tokio::time::sleep(PROBE_PERIOD).await;
        state
            .runtime_lag
            .observe(asked.elapsed().saturating_sub(PROBE_PERIOD));
    }
}

/// This thread's time on a CPU so far (`/proc/thread-self/schedstat`), on Linux.
pub fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Exact buckets for 0-3 µs, then four per power of two up to 2^30 µs (about 18 minutes); larger
/// values land in the last bucket.
pub const BUCKETS: usize = 4 + 28 * 4;

/// The bucket of a value in microseconds.
pub fn bucket_of(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (e - 2)) & 3) as usize;
    (4 + (e - 2) * 4 + sub).min(BUCKETS - 1)
}

/// The smallest value (µs) above bucket `i`: values in the bucket are below it.
pub fn bucket_upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64 + 1;
    }
    let e = (i - 4) / 4 + 2;
    let sub = ((i - 4) % 4) as u64;
    (4 + sub + 1) << (e - 2)
}

/// One row's latencies, updated with relaxed atomics (each field is a counter on its own; a
/// reader taking a snapshot while requests finish may see a count one ahead of its buckets).
#[derive(Debug)]
pub struct Latency {
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for c in [&self.count, &self.sum_us, &self.max_us]
            .into_iter()
            .chain(&self.buckets)
        {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Histogram {
        Histogram {
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }
}

/// A plain copy of one or more rows' latencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
    pub buckets: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            count: 0,
            sum_us: 0,
            max_us: 0,
            buckets: [0; BUCKETS],
        }
    }
}

impl Histogram {
    pub fn merge(&mut self, other: &Histogram) {
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// The upper bound (µs) of the bucket holding the `q` quantile, capped at the maximum seen.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(i).min(self.max_us.max(1));
            }
        }
        self.max_us
    }

    /// `{"count", "meanMs", "p50Ms", "p90Ms", "p99Ms", "maxMs"}`, milliseconds to the microsecond.
    pub fn to_json(&self) -> Value {
        let ms = |us: u64| us as f64 / 1000.0;
        let mean = if self.count == 0 {
            0.0
        } else {
            (self.sum_us as f64 / self.count as f64).round() / 1000.0
        };
        json!({
            "count": self.count,
            "meanMs": mean,
            "p50Ms": ms(self.quantile_us(0.5)),
            "p90Ms": ms(self.quantile_us(0.9)),
            "p99Ms": ms(self.quantile_us(0.99)),
            "maxMs": ms(self.max_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_a_quarter() {
        let mut last = 0;
        for us in (0..5000u64).chain([65_535, 1 << 20, (1 << 30) - 1]) {
            let i = bucket_of(us);
            assert!(i >= last, "{us}: bucket {i} before {last}");
            last = i;
            assert!(us < bucket_upper(i), "{us} not below bucket {i}'s bound");
            if i > 0 {
                assert!(us >= bucket_upper(i - 1), "{us} belongs below bucket {i}");
            }
            // The bound is at most 25% above any value in the bucket (from 4 µs on).
            if us >= 4 {
                assert!(bucket_upper(i) as f64 <= us as f64 * 1.25 + 1.0, "{us}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_mean_follow_the_observations() {
        let l = Latency::default();
        // 98 requests of 1 ms, one of 40 ms, one of 2 s.
        for _ in 0..98 {
            l.observe(Duration::from_millis(1));
        }
        l.observe(Duration::from_millis(40));
        l.observe(Duration::from_secs(2));
        let h = l.snapshot();
        assert_eq!((h.count, h.max_us), (100, 2_000_000));
        let p50 = h.quantile_us(0.5);
        assert!((1000..=1250).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_us(0.99);
        assert!((40_000..=50_000).contains(&p99), "p99 {p99}");
        assert_eq!(h.quantile_us(1.0), 2_000_000);
        let j = h.to_json();
        assert_eq!(j["count"], 100);
        assert_eq!(j["maxMs"], 2000.0);
        assert_eq!(j["meanMs"], 21.38);
        // Merging two rows adds them up.
        let mut m = Histogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!((m.count, m.sum_us, m.max_us), (200, 2 * h.sum_us, h.max_us));
        assert_eq!(m.quantile_us(0.5), p50);
        assert_eq!(Histogram::default().to_json()["p99Ms"], 0.0);
    }
}
