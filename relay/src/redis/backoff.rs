//! Reconnection delays: exponential from `push_redis_connect_timeout` up
//! to ten times it, with jitter so that the workers of many servers do not
//! reconnect in step after Redis comes back.

/// A small xorshift generator: jitter needs no better randomness.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        // Never zero (xorshift would stay there).
        Jitter((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..=n`.
    pub fn upto(&mut self, n: u64) -> u64 {
        match n.checked_add(1) {
            Some(m) => self.next_u64() % m,
            None => self.next_u64(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    failures: u32,
    jitter: Jitter,
}

impl Backoff {
    pub fn new(base_ms: u64, seed: u64) -> Backoff {
        Backoff {
            base_ms: base_ms.max(1),
            failures: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// A connection attempt failed (or a connection was lost): the delay
    /// before the next attempt, in milliseconds. The n-th failure in a row
    /// waits between half of and all of `base · 2^(n-1)`, capped at ten
    /// times `base`, and never less than `base`.
    pub fn next_delay(&mut self) -> u64 {
        let cap = self.base_ms.saturating_mul(10);
        let exp = self
            .base_ms
            .saturating_mul(1u64 << self.failures.min(20))
            .min(cap);
        self.failures = self.failures.saturating_add(1);
        let half = exp / 2;
        (half + self.jitter.upto(exp - half)).clamp(self.base_ms, cap)
    }

    /// The handshake succeeded: start again from the base delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_ten_times_the_base_with_jitter_and_resets() {
        let mut b = Backoff::new(1000, 42);
        let first = b.next_delay();
        assert_eq!(first, 1000, "the first retry waits the base delay");
        let d: Vec<u64> = (0..30).map(|_| b.next_delay()).collect();
        assert!(d.iter().all(|&x| (1000..=10_000).contains(&x)), "{d:?}");
        assert!((1000..=2000).contains(&d[0]));
        assert!((2000..=4000).contains(&d[1]));
        assert!(
            d[5..].iter().all(|&x| x >= 5000),
            "capped: between 5 and 10 s"
        );
        let distinct: std::collections::BTreeSet<_> = d[5..].iter().collect();
        assert!(distinct.len() > 5, "jittered: {d:?}");
        b.reset();
        assert_eq!(b.next_delay(), 1000);
    }

    #[test]
    fn two_workers_do_not_retry_in_step() {
        let mut a = Backoff::new(1000, 1);
        let mut b = Backoff::new(1000, 2);
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 5);
    }

    #[test]
    fn tiny_and_huge_bases_do_not_overflow() {
        let mut b = Backoff::new(0, 0);
        for _ in 0..100 {
            assert!((1..=10).contains(&b.next_delay()));
        }
        let mut b = Backoff::new(u64::MAX / 3, 7);
        for _ in 0..100 {
            b.next_delay();
        }
    }
}
