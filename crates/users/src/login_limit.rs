//! Slows down password guessing: after `max_failures` failed sign-ins for one e-mail address
//! within `window`, further attempts for it are refused until the window has passed.
//! Kept in memory: a restart forgets, which only gives a guesser a few more tries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimit {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimit {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when `key` is locked out now.
    pub fn locked(&self, key: &str, now: Instant) -> Option<u64> {
        let failures = self.failures.lock().ok()?;
        let (count, first) = failures.get(key)?;
        let until = *first + self.window;
        (*count >= self.max_failures && now < until).then(|| (until - now).as_secs().max(1))
    }

    pub fn failed(&self, key: &str, now: Instant) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        // Forget windows that have passed, so the map cannot grow without bound.
        if failures.len() > 10_000 {
            let window = self.window;
            failures.retain(|_, (_, first)| now < *first + window);
        }
        let entry = failures.entry(key.to_owned()).or_insert((0, now));
        if now >= entry.1 + self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_too_many_failures_and_unlocks_after_the_window() {
        let limit = LoginLimit::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            limit.failed("a", t0);
        }
        assert_eq!(limit.locked("a", t0), None);
        limit.failed("a", t0);
        assert!(limit.locked("a", t0).is_some());
        assert_eq!(
            limit.locked("b", t0),
            None,
            "other addresses are not affected"
        );
        assert_eq!(limit.locked("a", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn success_clears_the_count() {
        let limit = LoginLimit::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        limit.failed("a", t0);
        limit.succeeded("a");
        limit.failed("a", t0);
        assert_eq!(limit.locked("a", t0), None);
    }
}
