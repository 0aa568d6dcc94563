//! The engine's clock. Wall time anchored once, then advanced by tokio's monotonic clock, so
//! that tests on tokio's paused clock see stored deadlines move exactly as timers fire.

use crate::model::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_wall: Timestamp,
    anchor: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let wall = Timestamp::try_from(wall).unwrap_or(Timestamp::MAX);
        Clock {
            anchor_wall: wall,
            anchor: Instant::now(),
        }
    }

    /// A clock that reads `wall` (ms since the Unix epoch) now, whatever the system time:
    /// with tokio's paused clock, a run that happens at the same virtual times every time
    /// (`taskdeck screencast`).
    pub fn starting_at(wall: Timestamp) -> Self {
        Clock {
            anchor_wall: wall,
            anchor: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        crate::model::deadline_after(self.anchor_wall, self.anchor.elapsed())
    }

    /// The tokio instant at which wall time `at` arrives (now, if it has passed). A deadline
    /// further away than a year is treated as a year away: the timer then fires, finds
    /// nothing due and is armed again, instead of overflowing the monotonic clock.
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
        let ahead = crate::model::millis_until(self.now(), at).min(YEAR_MS);
        let now = Instant::now();
        now.checked_add(Duration::from_millis(ahead)).unwrap_or(now)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
