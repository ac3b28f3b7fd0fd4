//! The per-connection event rate limit, enforced as backpressure: a
//! connection that has used up its burst stops reading until it is back
//! within the rate, so the sender's socket fills and the sender waits. No
//! event is refused or dropped for going too fast.
//!
//! This is GCRA (the token bucket as a "theoretical arrival time"), charged
//! after the frame: a frame larger than the burst still goes through, and
//! the pause that follows it is as long as its excess.

use std::time::{Duration, Instant};

/// A rate of `1 / per_event` events per second with a burst of `burst` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    per_event: Duration,
    burst: u32,
}

impl RateLimit {
    /// `events_per_second` > 0 and `burst` >= 1 (both checked by the config).
    pub fn new(events_per_second: f64, burst: u32) -> RateLimit {
        let nanos = (1e9 / events_per_second).round().max(1.0) as u64;
        RateLimit {
            per_event: Duration::from_nanos(nanos),
            burst: burst.max(1),
        }
    }

    fn tolerance(&self) -> Duration {
        self.per_event * self.burst
    }
}

/// One connection's account.
#[derive(Debug)]
pub struct Bucket {
    limit: RateLimit,
    /// When the connection would be even with the rate had it sent
    /// everything so far at exactly the rate.
    tat: Instant,
}

impl Bucket {
    pub fn new(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { limit, tat: now }
    }

    /// Charge a frame of `events` events received at `now`; returns how long
    /// to stop reading (zero while within the burst). A frame of no events
    /// costs one: empty frames are work too.
    pub fn charge(&mut self, events: usize, now: Instant) -> Duration {
        let cost = self.limit.per_event * u32::try_from(events.max(1)).unwrap_or(u32::MAX);
        self.tat = self.tat.max(now) + cost;
        let resume = self.tat.checked_sub(self.limit.tolerance()).unwrap_or(now);
        resume.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        // 200 events/s (5 ms each), burst 200 (1 s worth).
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::new(200.0, 200), t0);
        assert_eq!(b.charge(100, t0), Duration::ZERO);
        assert_eq!(b.charge(100, t0), Duration::ZERO, "exactly the burst");
        assert_eq!(b.charge(100, t0), 500 * MS, "100 events over");
        // Reading resumes after the pause; the next frame owes its own time.
        let t1 = t0 + 500 * MS;
        assert_eq!(b.charge(100, t1), 500 * MS);
        // After a quiet spell the whole burst is available again, no more.
        let t2 = t1 + 10_000 * MS;
        assert_eq!(b.charge(200, t2), Duration::ZERO);
        assert_eq!(b.charge(1, t2), 5 * MS);
    }

    #[test]
    fn a_frame_larger_than_the_burst_passes_and_pays_after() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::new(10.0, 5), t0);
        assert_eq!(b.charge(25, t0), 2_000 * MS);
    }

    #[test]
    fn empty_frames_cost_one_event() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RateLimit::new(1.0, 1), t0);
        assert_eq!(b.charge(0, t0), Duration::ZERO);
        assert_eq!(b.charge(0, t0), 1_000 * MS);
    }

    #[test]
    fn fractional_rates() {
        let l = RateLimit::new(0.5, 1);
        assert_eq!(l.per_event, 2_000 * MS);
        assert_eq!(
            RateLimit::new(3.0, 1).per_event,
            Duration::from_nanos(333_333_333)
        );
    }
}
