//! A sliding-window rate limiter shared by all sessions: never more than
//! `count` sends in any window of length `per` (no extra burst allowance).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::job::Rate;

/// Safety margin added to the window so that network jitter between our send
/// time and the server's arrival time cannot squeeze `count + 1` arrivals into
/// one window.
const MARGIN: Duration = Duration::from_millis(100);

/// The limiter's state: the send times of the last `count` messages.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    sent: VecDeque<Instant>,
}

impl Limiter {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            sent: VecDeque::with_capacity(rate.count.min(100_000) as usize),
        }
    }

    /// Take one send slot now, or say how long to wait for one.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        let window = self.rate.per + MARGIN;
        while self.sent.len() > self.rate.count as usize {
            self.sent.pop_front();
        }
        if self.sent.len() == self.rate.count as usize {
            let oldest = self.sent[0];
            let free_at = oldest + window;
            if free_at > now {
                return Err(free_at - now);
            }
            self.sent.pop_front();
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// Give back the most recent slot (taken but not used).
    pub fn release(&mut self) {
        self.sent.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_count_in_any_window() {
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(1),
        };
        let mut lim = Limiter::new(rate);
        let start = Instant::now();
        let mut t = start;
        let mut granted = Vec::new();
        // Simulate 20 s in 10 ms steps, taking a slot whenever one is free.
        while t < start + Duration::from_secs(20) {
            if lim.try_acquire(t).is_ok() {
                granted.push(t);
            }
            t += Duration::from_millis(10);
        }
        for (i, &a) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|&&b| b < a + rate.per)
                .count();
            assert!(
                in_window <= 5,
                "{in_window} sends within 1 s starting at #{i}"
            );
        }
        // And it is not needlessly slow: about 5 per second.
        assert!(
            granted.len() >= 90,
            "only {} granted in 20 s",
            granted.len()
        );
    }

    #[test]
    fn wait_time_is_until_the_oldest_slot_expires() {
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(60),
        };
        let mut lim = Limiter::new(rate);
        let t0 = Instant::now();
        assert!(lim.try_acquire(t0).is_ok());
        assert!(lim.try_acquire(t0 + Duration::from_secs(1)).is_ok());
        let wait = lim.try_acquire(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(58) + MARGIN);
        lim.release();
        assert_eq!(lim.sent.len(), 1);
    }
}
