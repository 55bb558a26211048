//! Test hosts: each replica in a network namespace of its own (`ip netns`), with its own
//! addresses, on two networks that exist only for the test:
//!
//! - the front network (198.18.K.0/24, bridge `me<K>f`), where the load balancer and the test,
//!   at 198.18.K.1, reach each replica's API and metrics;
//! - the back network (198.19.K.0/24, bridge `me<K>b`), where the replicas reach PostgreSQL and
//!   the broker through forwarders at 198.19.K.1 (those servers listen on the test machine's
//!   loopback only, which a namespace cannot see).
//!
//! Both ranges are reserved for network tests (RFC 2544) and exist only on these bridges:
//! nothing leaves the machine. Cutting a replica off is setting its back link down: its packets
//! to the database and the broker are dropped in silence, as a partition does, while its front
//! link stays up so that probes still reach it. Needs root (`ip` from iproute2).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// One test host: a namespace with an address on each network.
pub struct Host {
    pub netns: String,
    pub front: Ipv4Addr,
    /// The host's end of its back link, in the test's namespace: down is cut off.
    back_link: String,
}

/// The two networks and their hosts, removed when dropped.
pub struct Network {
    k: u8,
    hosts: Vec<String>,
}

/// Numbers the networks of this test process, so that its tests running at once start their
/// search for free ranges at different places.
static NETWORKS: AtomicU8 = AtomicU8::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ip` whose failure does not matter (removing what may not exist).
fn ip_quietly(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// Whether `ip` succeeded.
fn ip_tried(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Creates the bridge of 198.`net`.`k`.0/24 (`me<k>f` for 18, `me<k>b` for 19) with the
/// address .1, unless a bridge of that name exists.
fn add_bridge(net: u8, k: u8) -> bool {
    let bridge = format!("me{k}{}", if net == 18 { "f" } else { "b" });
    // A bridge takes the lowest address of its ports unless given one: each host added would
    // change it, and hosts started earlier would send to the old one until their neighbour
    // entries expire (seconds of silence that look like a partition).
    let mac = format!("02:00:c6:{net:02x}:{k:02x}:01");
    if !ip_tried(&["link", "add", &bridge, "address", &mac, "type", "bridge"]) {
        return false;
    }
    ip(&[
        "addr",
        "add",
        &format!("198.{net}.{k}.1/24"),
        "dev",
        &bridge,
    ]);
    ip(&["link", "set", "dev", &bridge, "up"]);
    true
}

impl Network {
    /// Takes the first K whose bridges nobody has: creating a bridge that exists fails, so two
    /// test processes never share a range, and what a killed one left behind is skipped rather
    /// than torn down under a test that may still use it.
    pub fn create() -> Network {
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let first = (std::process::id() % 50) * 4 + u32::from(n % 4);
        for i in 0..200 {
            let k = u8::try_from((first + i) % 200 + 20).unwrap();
            if !add_bridge(18, k) {
                continue;
            }
            if !add_bridge(19, k) {
                ip_quietly(&["link", "del", &format!("me{k}f")]);
                continue;
            }
            return Network {
                k,
                hosts: Vec::new(),
            };
        }
        panic!("no test network could be made (`ip link add … type bridge` needs root)");
    }

    /// Where the replicas reach the test machine's servers: forwarders listen here.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.k, 1)
    }

    /// A new host, numbered from 2.
    pub fn add_host(&mut self) -> Host {
        let k = self.k;
        let i = self.hosts.len() + 2;
        let netns = format!("myevents-test-{k}-{i}");
        ip_quietly(&["netns", "del", &netns]);
        ip(&["netns", "add", &netns]);
        self.hosts.push(netns.clone());
        ip(&["-n", &netns, "link", "set", "dev", "lo", "up"]);
        for (side, net, inside) in [("f", 18, "front"), ("b", 19, "back")] {
            let outside = format!("me{k}{side}{i}");
            ip_quietly(&["link", "del", &outside]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", inside, "netns", &netns,
            ]);
            ip(&[
                "link",
                "set",
                "dev",
                &outside,
                "master",
                &format!("me{k}{side}"),
            ]);
            ip(&["link", "set", "dev", &outside, "up"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("198.{net}.{k}.{i}/24"),
                "dev",
                inside,
            ]);
            ip(&["-n", &netns, "link", "set", "dev", inside, "up"]);
        }
        Host {
            netns,
            front: Ipv4Addr::new(198, 18, k, u8::try_from(i).unwrap()),
            back_link: format!("me{k}b{i}"),
        }
    }
}

impl Host {
    /// Cuts the host off from the back network: what it sends there is dropped in silence.
    pub fn cut_off(&self) {
        ip(&["link", "set", "dev", &self.back_link, "down"]);
    }

    pub fn reconnect(&self) {
        ip(&["link", "set", "dev", &self.back_link, "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A namespace takes its ends of the links with it, and the other ends go too.
        for netns in &self.hosts {
            ip_quietly(&["netns", "del", netns]);
        }
        for side in ["f", "b"] {
            ip_quietly(&["link", "del", &format!("me{}{side}", self.k)]);
        }
    }
}

/// Forwards every connection made to `listen` (an address of the test machine's) to `target`,
/// for as long as the test's runtime runs: the replicas' way to the servers on loopback. The
/// address it listens on (`listen` may give port 0).
pub async fn forward(listen: SocketAddr, target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                // Out of file descriptors, say: try again in a moment rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}
