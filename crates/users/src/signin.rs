//! Sign-in protection, free of I/O: how long an attempt to sign in must wait after failed ones.
//!
//! Failures are counted under two keys: the account asked for together with the client's
//! address, and the client's address alone. The first few failures of a key cost nothing; each
//! further one doubles the wait (1 s, 2 s, 4 s … up to a cap). An attempt waits for the longer
//! of its two keys. A stranger's failures therefore slow down only the stranger's address: the
//! owner signing in from another address meets neither of the stranger's keys, so a guesser
//! cannot lock an owner out. The per-address key limits one address trying many accounts.
//! A success clears its (account, address) key. The counts live in the store
//! ([`crate::UserStore::add_failure`]), so that every replica of the service sees them.

use std::net::IpAddr;
use std::time::Duration;

/// Failed sign-ins counted under one key. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    /// When the last failure happened.
    pub last: i64,
    /// When the count is forgotten: a failure at or after this time starts again at 1.
    pub expires: i64,
}

/// How long a key remembers its failures after the last one. Longer than any wait, so that a
/// guesser cannot get free attempts again by waiting out the cap: at the cap an address keeps
/// four guesses an hour for an account, where waiting a day for a fresh count would give it a
/// handful more.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The limits an operator configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures of one account from one address before attempts start to wait.
    pub per_account: u32,
    /// Failures from one address, whatever the accounts, before attempts start to wait.
    pub per_address: u32,
    /// The longest wait.
    pub max_wait: Duration,
}

/// The two keys an attempt is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub account: String,
    pub address: String,
}

impl Keys {
    /// `email` as parsed (lower-cased), whether or not it names an account: answering
    /// differently for unknown addresses would tell a stranger who has one.
    pub fn new(email: &str, client: IpAddr) -> Keys {
        let address = address_key(client);
        Keys {
            account: format!("account {email} {address}"),
            address: format!("address {address}"),
        }
    }
}

/// An IPv4 address as it is; an IPv6 one by its /64, which one subscriber usually holds whole
/// (counting single IPv6 addresses would give a guesser 2^64 fresh keys).
fn address_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Limits {
    /// How long an attempt at `now` must wait, given the failures of its two keys; `None` when
    /// it may try now.
    pub fn wait(
        &self,
        account: Option<&Failures>,
        address: Option<&Failures>,
        now: i64,
    ) -> Option<Duration> {
        let account = account.map_or(0, |f| self.remaining(f, self.per_account, now));
        let address = address.map_or(0, |f| self.remaining(f, self.per_address, now));
        let wait = account.max(address);
        (wait > 0).then(|| Duration::from_millis(wait as u64))
    }

    /// Milliseconds from `now` until a key with `failures` may try again.
    fn remaining(&self, failures: &Failures, free: u32, now: i64) -> i64 {
        if failures.expires <= now || failures.count < free.max(1) {
            return 0;
        }
        // The `free`-th failure makes the next attempt wait 1 s, each further one twice as long.
        let doublings = (failures.count - free.max(1)).min(40);
        let wait = (1000_i64 << doublings).min(self.max_wait.as_millis() as i64);
        (failures.last + wait - now).max(0)
    }

    /// When a failure at `now` is forgotten.
    pub fn expires(&self, now: i64) -> i64 {
        let forget = FORGET_AFTER.max(self.max_wait).as_millis() as i64;
        now.saturating_add(forget)
    }
}

/// Where a request comes from: the TCP peer, or, when the peer is one of the operator's
/// `trusted` proxies, the address that proxy saw, read from `X-Forwarded-For` right to left
/// past every trusted proxy. Left of that the header is whatever the client wrote, so it is
/// never believed (a guesser would otherwise name a fresh address on every attempt).
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    let canonical = |ip: IpAddr| ip.to_canonical();
    let mut client = canonical(peer);
    if !trusted.contains(&client) {
        return client;
    }
    let Some(header) = forwarded_for else {
        return client;
    };
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !trusted.contains(&client) {
                    return client;
                }
            }
            // A hop that is not an address: the proxy that wrote it is the last one believed.
            Err(_) => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1000;

    fn limits() -> Limits {
        Limits {
            per_account: 3,
            per_address: 10,
            max_wait: Duration::from_secs(60),
        }
    }

    /// The failures of a key after `count` failures, the last at `last`.
    fn failed(limits: &Limits, count: u32, last: i64) -> Failures {
        Failures {
            count,
            last,
            expires: limits.expires(last),
        }
    }

    fn secs(wait: Option<Duration>) -> Option<u64> {
        wait.map(|w| w.as_millis().div_ceil(1000) as u64)
    }

    #[test]
    fn the_first_failures_are_free_and_each_further_one_doubles_the_wait() {
        let l = limits();
        let t = 1_000_000;
        assert_eq!(l.wait(None, None, t), None);
        assert_eq!(l.wait(Some(&failed(&l, 2, t)), None, t), None);
        let waits: Vec<_> = (3..=10)
            .map(|n| secs(l.wait(Some(&failed(&l, n, t)), None, t)))
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 60, 60].map(Some),
            "1 s, then doubling, capped at max_wait"
        );
        let four = failed(&l, 5, t);
        assert_eq!(secs(l.wait(Some(&four), None, t + 3 * SECOND)), Some(1));
        assert_eq!(l.wait(Some(&four), None, t + 4 * SECOND), None);
    }

    #[test]
    fn a_huge_count_stays_at_the_cap() {
        let l = limits();
        let many = failed(&l, u32::MAX, 0);
        assert_eq!(secs(l.wait(Some(&many), None, 0)), Some(60));
    }

    #[test]
    fn failures_are_remembered_for_a_day_or_the_longest_wait() {
        let l = limits();
        assert_eq!(l.expires(5), 5 + 24 * 3600 * SECOND);
        let patient = Limits {
            max_wait: Duration::from_secs(48 * 3600),
            ..l
        };
        assert_eq!(patient.expires(5), 5 + 48 * 3600 * SECOND);
        let forgotten = Failures {
            count: 9,
            last: 0,
            expires: SECOND,
        };
        assert_eq!(l.wait(Some(&forgotten), None, SECOND), None);
        assert!(l.wait(Some(&forgotten), None, SECOND - 1).is_some());
    }

    #[test]
    fn an_attempt_waits_for_the_longer_of_its_two_keys() {
        let l = limits();
        let t = 0;
        let account = failed(&l, 4, t); // 2 s
        let address = failed(&l, 12, t); // 4 s
        assert_eq!(secs(l.wait(Some(&account), Some(&address), t)), Some(4));
        assert_eq!(secs(l.wait(Some(&account), None, t)), Some(2));
        assert_eq!(
            l.wait(None, Some(&failed(&l, 9, t)), t),
            None,
            "an address's allowance is its own"
        );
    }

    #[test]
    fn a_strangers_failures_do_not_touch_the_owner_at_another_address() {
        let stranger = Keys::new("ann@example.com", "127.0.0.2".parse().unwrap());
        let owner = Keys::new("ann@example.com", "127.0.0.1".parse().unwrap());
        assert_ne!(stranger.account, owner.account);
        assert_ne!(stranger.address, owner.address);
        let other_account = Keys::new("bob@example.com", "127.0.0.2".parse().unwrap());
        assert_eq!(
            other_account.address, stranger.address,
            "one address, one count"
        );
        assert_ne!(other_account.account, stranger.account);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a = Keys::new("a@b.io", "2001:db8:1:2::1".parse().unwrap());
        let b = Keys::new("a@b.io", "2001:db8:1:2:ffff::9".parse().unwrap());
        let c = Keys::new("a@b.io", "2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Keys::new("a@b.io", "::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(mapped, Keys::new("a@b.io", "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.0.0.1");
        let trusted = [proxy];
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(proxy, Some("1.2.3.4"), &[]),
            proxy,
            "nothing is trusted by default"
        );
        assert_eq!(
            client_address(proxy, Some("6.6.6.6, 198.51.100.7"), &trusted),
            ip("198.51.100.7"),
            "the address the proxy saw, not what the client wrote before it"
        );
        assert_eq!(client_address(proxy, None, &trusted), proxy);
        assert_eq!(
            client_address(proxy, Some("1.2.3.4, garbage"), &trusted),
            proxy
        );
    }
}
