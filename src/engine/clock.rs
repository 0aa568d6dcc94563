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
            .as_millis() as Timestamp;
        Clock {
            anchor_wall: wall,
            anchor: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.anchor_wall + self.anchor.elapsed().as_millis() as Timestamp
    }

    /// The tokio instant at which wall time `at` arrives (now, if it has passed).
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        let ahead = at - self.now();
        Instant::now() + Duration::from_millis(ahead.max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
