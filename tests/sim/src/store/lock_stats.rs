//! How long the store's lock is waited for and held, per side (read, write): count, sum and max of
//! each, and how many acquisitions waited over a millisecond. Relaxed atomics, so timing a lock
//! adds two clock reads and a few uncontended increments to each acquisition, no lock of its own.
//! Served under `storeLock` in `/sim/stats`.

use serde_json::{Value, json};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A wait longer than this counts as slow.
const SLOW_WAIT_NS: u64 = 1_000_000;

/// One side's counters.
#[derive(Debug, Default)]
pub struct Side {
    count: AtomicU64,
    wait_ns: AtomicU64,
    wait_max_ns: AtomicU64,
    slow_waits: AtomicU64,
    hold_ns: AtomicU64,
    hold_max_ns: AtomicU64,
}

fn ns(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

impl Side {
    fn acquired(&self, asked: Instant, got: Instant) {
        let wait = ns(asked, got);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.wait_ns.fetch_add(wait, Ordering::Relaxed);
        self.wait_max_ns.fetch_max(wait, Ordering::Relaxed);
        if wait > SLOW_WAIT_NS {
            self.slow_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn released(&self, got: Instant) {
        let hold = ns(got, Instant::now());
        self.hold_ns.fetch_add(hold, Ordering::Relaxed);
        self.hold_max_ns.fetch_max(hold, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.count,
            &self.wait_ns,
            &self.wait_max_ns,
            &self.slow_waits,
            &self.hold_ns,
            &self.hold_max_ns,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// `{"count", "waitTotalMs", "waitMeanUs", "waitMaxMs", "slowWaits", "holdTotalMs",
    /// "holdMeanUs", "holdMaxMs"}`.
    pub fn to_json(&self) -> Value {
        let count = self.count.load(Ordering::Relaxed);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ms = |n: u64| (n as f64 / 1e3).round() / 1e3;
        let mean_us = |n: u64| {
            if count == 0 {
                0.0
            } else {
                (n as f64 / count as f64 / 1e1).round() / 1e2
            }
        };
        json!({
            "count": count,
            "waitTotalMs": ms(get(&self.wait_ns)),
            "waitMeanUs": mean_us(get(&self.wait_ns)),
            "waitMaxMs": ms(get(&self.wait_max_ns)),
            "slowWaits": get(&self.slow_waits),
            "holdTotalMs": ms(get(&self.hold_ns)),
            "holdMeanUs": mean_us(get(&self.hold_ns)),
            "holdMaxMs": ms(get(&self.hold_max_ns)),
        })
    }
}

/// The store lock's counters.
#[derive(Debug, Default)]
pub struct LockStats {
    pub read: Side,
    pub write: Side,
}

impl LockStats {
    /// `{"read": side, "write": side}` (see [`Side::to_json`]).
    pub fn to_json(&self) -> Value {
        json!({"read": self.read.to_json(), "write": self.write.to_json()})
    }

    pub fn reset(&self) {
        self.read.reset();
        self.write.reset();
    }
}

/// A lock guard that adds the time it was held to its side when dropped.
pub struct Timed<'a, G> {
    guard: G,
    got: Instant,
    side: &'a Side,
}

impl<'a, G> Timed<'a, G> {
    /// Takes a guard with `lock`, timing the wait.
    pub fn acquire(side: &'a Side, lock: impl FnOnce() -> G) -> Self {
        let asked = Instant::now();
        let guard = lock();
        let got = Instant::now();
        side.acquired(asked, got);
        Timed { guard, got, side }
    }
}

impl<G> Drop for Timed<'_, G> {
    fn drop(&mut self) {
        self.side.released(self.got);
    }
}

impl<G: Deref> Deref for Timed<'_, G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Timed<'_, G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::RwLock;
    use std::time::Duration;

    #[test]
    fn waits_and_holds_are_timed_per_side() {
        let stats = LockStats::default();
        let lock = RwLock::new(0u32);
        // A slow acquisition (the closure stands for a lock another thread holds).
        let w = Timed::acquire(&stats.write, || {
            std::thread::sleep(Duration::from_millis(5));
            lock.write().unwrap()
        });
        std::thread::sleep(Duration::from_millis(5));
        drop(w);
        let r = Timed::acquire(&stats.read, || lock.read().unwrap());
        assert_eq!(*r, 0);
        drop(r);
        let j = stats.to_json();
        assert_eq!(
            (&j["read"]["count"], &j["write"]["count"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(
            (&j["write"]["slowWaits"], &j["read"]["slowWaits"]),
            (&json!(1), &json!(0))
        );
        assert!(j["write"]["waitMaxMs"].as_f64().unwrap() >= 5.0, "{j}");
        assert!(j["write"]["holdMaxMs"].as_f64().unwrap() >= 5.0, "{j}");
        assert!(j["read"]["holdMaxMs"].as_f64().unwrap() < 5.0, "{j}");
        stats.reset();
        assert_eq!(stats.to_json()["write"]["count"], 0);
    }
}
