//! An optional cap on guest bookings per client address, for operators who fear bots buying
//! up an event: at most `per_hour` guest bookings from one address in an hour that starts with
//! its first one. Off by default, since a whole office or a mobile carrier can share one
//! address. Signed-in customers are not limited here: an account is its own limit.
//!
//! Kept in memory, per process: with several replicas behind a balancer, each counts its own
//! share, so the effective limit is up to `per_hour` times the replicas.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);

/// Entries beyond this many make the next booking sweep out the windows that have ended.
const SWEEP_AT: usize = 10_000;

pub struct GuestLimit {
    per_hour: u32,
    windows: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl GuestLimit {
    /// `None` when `per_hour` is 0: no limit.
    pub fn new(per_hour: u32) -> Option<Self> {
        (per_hour > 0).then(|| Self {
            per_hour,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a guest booking from `addr` at `now`, or says how many seconds to wait.
    pub fn take(&self, addr: IpAddr, now: Instant) -> Result<(), u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > SWEEP_AT {
            windows.retain(|_, (_, start)| now < *start + WINDOW);
        }
        let (count, start) = windows.entry(addr).or_insert((0, now));
        if now >= *start + WINDOW {
            (*count, *start) = (0, now);
        }
        if *count >= self.per_hour {
            let wait = (*start + WINDOW).saturating_duration_since(now);
            return Err(wait.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_no_limit() {
        assert!(GuestLimit::new(0).is_none());
    }

    #[test]
    fn an_address_gets_its_bookings_per_hour_and_others_are_not_affected() {
        let limit = GuestLimit::new(2).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(limit.take(a, t0), Ok(()));
        assert_eq!(limit.take(a, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            limit.take(a, t0 + Duration::from_secs(600)),
            Err(3000),
            "the third within the hour waits for the hour's end"
        );
        assert_eq!(limit.take(b, t0 + Duration::from_secs(600)), Ok(()));
        assert_eq!(
            limit.take(a, t0 + WINDOW),
            Ok(()),
            "a new hour starts afresh"
        );
    }
}
