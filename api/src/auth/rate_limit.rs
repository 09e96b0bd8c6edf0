//! Failed-login throttling per e-mail address, in memory. Each replica counts on
//! its own, so across N replicas an attacker gets at most N × the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `key` has used up its failures in the current window.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((count, start)) if now.duration_since(*start) < self.window && *count >= self.limit => {
                Err(self.window - now.duration_since(*start))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory: forget expired windows once the map grows.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, start)| now.duration_since(*start) < window);
        }
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_resets_on_success() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        assert!(t.check("a").is_ok());
        t.record_failure("a");
        t.record_failure("a");
        assert!(t.check("a").is_err());
        assert!(t.check("b").is_ok());
        t.record_success("a");
        assert!(t.check("a").is_ok());
    }

    #[test]
    fn a_new_window_forgets_old_failures() {
        let t = LoginThrottle::new(1, Duration::from_millis(0));
        t.record_failure("a");
        assert!(t.check("a").is_ok());
    }
}
