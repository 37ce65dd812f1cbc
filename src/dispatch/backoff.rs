//! Exponential backoff (pure): how long to wait before retry `n`.
//!
//! Used for transient send failures and for following a remote task. No
//! jitter: dispatch is spread across delegations already, and a
//! deterministic delay keeps the behaviour testable.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// No wait is longer than this.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry `n` (0-based): `initial · 2ⁿ`, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `n`, but at least what the agent asked for in
    /// `Retry-After` (itself capped at `max`, so an agent cannot park a
    /// delegation for a day).
    pub fn delay_respecting(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let own = self.delay(n);
        match retry_after {
            Some(asked) => own.max(asked.min(self.max)),
            None => own,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    #[test]
    fn the_delay_doubles_from_the_initial_wait_up_to_the_cap() {
        let delays: Vec<u128> = (0..7).map(|n| B.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(B.delay(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_lengthens_the_wait_but_never_past_the_cap() {
        assert_eq!(
            B.delay_respecting(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            B.delay_respecting(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(2)
        );
        assert_eq!(
            B.delay_respecting(3, Some(Duration::from_millis(1))),
            Duration::from_millis(800)
        );
    }
}
