//! Clocks for the services: the system clock, and one tests can move forward.

use std::sync::Mutex;

use agora_domain::clock::Clock;
use chrono::{DateTime, Duration, Utc};

/// The real time plus an offset that only grows: tests reach deadlines by
/// advancing it instead of waiting.
#[derive(Debug, Default)]
pub struct AdjustableClock {
    offset: Mutex<Duration>,
}

impl AdjustableClock {
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset += by;
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().unwrap_or_else(|p| p.into_inner());
        Utc::now() + offset
    }
}
