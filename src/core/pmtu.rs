//! The path MTU toward each remote VTEP or node, learned from the underlay (ICMP "fragmentation
//! needed" about our sends, a send refused with EMSGSIZE and the route's MTU), shared by every
//! worker, and aged back up to the configured value like the kernel's PMTU cache.
//!
//! Rules (those of Linux's `__ip_rt_update_pmtu` and its route exceptions):
//! - a learned value is never above the configured underlay MTU, never below [`MIN_PMTU`]
//!   (`net.ipv4.route.min_pmtu`: a lower report is raised to it);
//! - a report only lowers the value; one equal to it refreshes its lifetime;
//! - a learned value expires [`PMTU_EXPIRES`] after it was last lowered or refreshed
//!   (`net.ipv4.route.mtu_expires`), and the path goes back to the configured MTU.
//!
//! Time is passed in. Writers (the workers' once-a-second housekeeping, which reads the
//! sockets' error queues) take a mutex; readers on the packet path never do: every change
//! publishes an immutable snapshot and bumps a generation counter, and a worker's
//! [`Encapsulator`](super::encapsulator::Encapsulator) re-reads its per-remote limits only
//! when the generation moved (one relaxed atomic load per packet otherwise).

use super::Timestamp;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The lowest path MTU ever used (Linux's `min_pmtu`: 512 + 20 + 20).
pub const MIN_PMTU: u16 = 552;
/// How long a learned path MTU holds (Linux's `mtu_expires`: 10 minutes).
pub const PMTU_EXPIRES: Duration = Duration::from_secs(600);
/// Remotes whose path MTU is remembered; at the cap, reports about new remotes are ignored
/// until entries expire (every report also reaches the kernel's own cache).
pub const MAX_LEARNED: usize = 65_536;

/// A learned path MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Learned {
    mtu: u16,
    expires: Timestamp,
}

type Snapshot = HashMap<IpAddr, u16, ahash::RandomState>;

/// What [`PathMtus::learn`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// The path MTU toward the remote is now this (lower than before).
    Lowered(u16),
    /// The report confirmed the current value: its lifetime starts again.
    Refreshed,
    /// Nothing changed (not lower than the current value, or the table is full).
    Ignored,
}

/// One row of [`PathMtus::learned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedMtu {
    /// The remote VTEP or node.
    pub remote: IpAddr,
    /// Its path MTU (outer packet bytes).
    pub mtu: u16,
    /// Time left before it goes back to the configured MTU.
    pub expires_in: Duration,
}

/// The path MTUs of one daemon (shared by its workers and the control plane).
#[derive(Debug)]
pub struct PathMtus {
    configured: u16,
    generation: AtomicU64,
    learned: Mutex<HashMap<IpAddr, Learned>>,
    snapshot: ArcSwap<Snapshot>,
}

impl PathMtus {
    /// A table for an underlay of MTU `underlay_mtu` (at most 65535 is used: the largest IPv4
    /// packet), with nothing learned.
    pub fn new(underlay_mtu: u32) -> PathMtus {
        let configured = u16::try_from(underlay_mtu).unwrap_or(u16::MAX);
        PathMtus {
            configured,
            generation: AtomicU64::new(0),
            learned: Mutex::new(HashMap::new()),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
        }
    }

    /// The configured underlay MTU: the path MTU of every remote nothing was learned about.
    pub fn configured(&self) -> u16 {
        self.configured
    }

    /// Moves on every change of a learned value: a reader whose copy is of another generation
    /// reads again.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The path MTU toward `remote` (outer packet bytes), as last published.
    pub fn get(&self, remote: IpAddr) -> u16 {
        self.snapshot
            .load()
            .get(&remote)
            .copied()
            .unwrap_or(self.configured)
    }

    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Learned>> {
        // The table is consistent after every statement: a panic elsewhere cannot break it.
        self.learned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a report at `now` that packets to `remote` must be at most `mtu` bytes.
    pub fn learn(&self, now: Timestamp, remote: IpAddr, mtu: u32) -> Learn {
        let mtu = u16::try_from(mtu)
            .unwrap_or(u16::MAX)
            .max(MIN_PMTU)
            .min(self.configured);
        let expires = now + PMTU_EXPIRES;
        let mut t = self.table();
        let current = t.get(&remote).filter(|l| l.expires > now).map(|l| l.mtu);
        let r = match current {
            Some(cur) if mtu > cur => return Learn::Ignored,
            Some(cur) if mtu == cur => Learn::Refreshed,
            None if mtu >= self.configured => return Learn::Ignored,
            None if t.len() >= MAX_LEARNED && !t.contains_key(&remote) => return Learn::Ignored,
            _ => Learn::Lowered(mtu),
        };
        t.insert(remote, Learned { mtu, expires });
        if r != Learn::Refreshed {
            self.publish(&t);
        }
        r
    }

    /// Forgets the values whose time is up at `now` (their paths go back to the configured
    /// MTU); how many. Called on the housekeeping tick.
    pub fn expire(&self, now: Timestamp) -> usize {
        let mut t = self.table();
        let before = t.len();
        t.retain(|_, l| l.expires > now);
        let gone = before - t.len();
        if gone > 0 {
            self.publish(&t);
        }
        gone
    }

    /// Every learned value still valid at `now`, by remote.
    pub fn learned(&self, now: Timestamp) -> Vec<LearnedMtu> {
        let mut v: Vec<LearnedMtu> = self
            .table()
            .iter()
            .filter(|(_, l)| l.expires > now)
            .map(|(r, l)| LearnedMtu {
                remote: *r,
                mtu: l.mtu,
                expires_in: l.expires.since(now),
            })
            .collect();
        v.sort_by_key(|l| l.remote);
        v
    }

    /// The learned value toward `remote` still valid at `now`, if any.
    pub fn learned_toward(&self, now: Timestamp, remote: IpAddr) -> Option<LearnedMtu> {
        let t = self.table();
        let l = t.get(&remote).filter(|l| l.expires > now)?;
        Some(LearnedMtu {
            remote,
            mtu: l.mtu,
            expires_in: l.expires.since(now),
        })
    }

    fn publish(&self, t: &HashMap<IpAddr, Learned>) {
        let snap: Snapshot = t.iter().map(|(r, l)| (*r, l.mtu)).collect();
        self.snapshot.store(Arc::new(snap));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Which of our sends an ICMP error may be about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OurSends {
    /// VXLAN: UDP from our address to one of these destination ports.
    Vxlan {
        /// The VXLAN UDP ports of the networks (a few: compared one by one).
        ports: Vec<u16>,
    },
    /// IPIP: IP protocol 4 (IPv4 inside) or 41 (IPv6 inside) from our address.
    Ipip,
}

/// Reads an ICMP "fragmentation needed" (type 3 code 4) as a raw ICMP socket hands it over
/// (IPv4 header, ICMP header, the start of the packet it is about) and returns the remote and
/// the MTU it reports when it is about one of `ours` sent from `local`; `None` for anything
/// else. An MTU of 0 (a router of before RFC 1191) is not a report.
pub fn frag_needed_about(packet: &[u8], local: IpAddr, ours: &OurSends) -> Option<(IpAddr, u32)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || ihl < 20 || *packet.get(9)? != 1 {
        return None;
    }
    let icmp = packet.get(ihl..)?;
    if icmp.get(..2)? != [3, 4] {
        return None;
    }
    let mtu = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
    let quoted = icmp.get(8..)?;
    let qihl = usize::from(quoted.first()? & 0x0f) * 4;
    if quoted.first()? >> 4 != 4 || qihl < 20 {
        return None;
    }
    let at = |i: usize| -> Option<IpAddr> {
        let b: [u8; 4] = quoted.get(i..i + 4)?.try_into().ok()?;
        Some(IpAddr::from(b))
    };
    let (src, dst) = (at(12)?, at(16)?);
    let proto = *quoted.get(9)?;
    let about_us = match ours {
        OurSends::Ipip => proto == 4 || proto == 41,
        OurSends::Vxlan { ports } => {
            proto == 17
                && quoted
                    .get(qihl + 2..qihl + 4)
                    .is_some_and(|p| ports.contains(&u16::from_be_bytes([p[0], p[1]])))
        }
    };
    (src == local && about_us && mtu > 0).then_some((dst, u32::from(mtu)))
}

/// Reads an ICMPv6 "packet too big" (type 2, RFC 4443 §3.2) as a raw ICMPv6 socket hands it
/// over (from the ICMPv6 header on: the MTU, then the start of the packet it is about) and
/// returns the remote and the MTU it reports when it is about a VXLAN datagram of ours sent
/// from `local`; `None` for anything else (IPIP never runs over IPv6). An MTU below IPv6's
/// minimum link MTU (1280) is taken as 1280 (RFC 8201 §4).
pub fn packet_too_big_about(icmp6: &[u8], local: IpAddr, ours: &OurSends) -> Option<(IpAddr, u32)> {
    if icmp6.get(..2)? != [2, 0] {
        return None;
    }
    let mtu = u32::from_be_bytes(icmp6.get(4..8)?.try_into().ok()?);
    let quoted = icmp6.get(8..)?;
    if quoted.first()? >> 4 != 6 {
        return None;
    }
    let at = |i: usize| -> Option<IpAddr> {
        let b: [u8; 16] = quoted.get(i..i + 16)?.try_into().ok()?;
        Some(IpAddr::from(b))
    };
    let (src, dst) = (at(8)?, at(24)?);
    let OurSends::Vxlan { ports } = ours else {
        return None;
    };
    // Our datagrams carry no extension header: UDP follows the fixed header.
    let about_us = *quoted.get(6)? == 17
        && quoted
            .get(42..44)
            .is_some_and(|p| ports.contains(&u16::from_be_bytes([p[0], p[1]])));
    (src == local && about_us).then_some((dst, mtu.max(1280)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const R: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const S: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));

    #[test]
    fn reports_lower_within_bounds_and_only_lower() {
        let p = PathMtus::new(1500);
        assert_eq!((p.configured(), p.get(R)), (1500, 1500));
        let g0 = p.generation();
        assert_eq!(
            p.learn(Timestamp(0), R, 1600),
            Learn::Ignored,
            "never above"
        );
        assert_eq!(p.learn(Timestamp(0), R, 1500), Learn::Ignored);
        assert_eq!(p.generation(), g0);
        assert_eq!(p.learn(Timestamp(0), R, 1400), Learn::Lowered(1400));
        assert!(p.generation() > g0);
        assert_eq!((p.get(R), p.get(S)), (1400, 1500), "per remote");
        assert_eq!(p.learn(Timestamp(1), R, 1450), Learn::Ignored, "only lower");
        assert_eq!(p.learn(Timestamp(2), R, 1400), Learn::Refreshed);
        assert_eq!(p.learn(Timestamp(3), R, 100), Learn::Lowered(MIN_PMTU));
        assert_eq!(p.get(R), MIN_PMTU);
        // A jumbo underlay is bounded by the largest IPv4 packet.
        assert_eq!(PathMtus::new(70_000).configured(), u16::MAX);
    }

    /// An ICMP error as the kernel's own `ip_fragment` sent it (captured on this machine with a
    /// raw ICMP socket: a 1450-byte VXLAN send over a route of MTU 1400).
    const KERNEL_FRAG_NEEDED: &str = "45c002407a0000004001786ac00002c9c00002c903041be800000578\
        450005aa000040004011afafc00002c9c00002cac35012b505960000";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn reads_packet_too_big_about_our_vxlan_sends_only() {
        // scapy: ICMPv6PacketTooBig(mtu=1400)/IPv6(src=local, dst=remote)/UDP(sport=50000,
        // dport=4789)/VXLAN(vni=42)/64 zero bytes, as a raw ICMPv6 socket hands it over.
        let p = hex(
            "0200000000000578600000000050114020010db800420000000000000000000120010db8\
             004200000000000000000002c35012b500509b4f0800000000002a00",
        );
        let local: IpAddr = "2001:db8:42::1".parse().unwrap();
        let remote: IpAddr = "2001:db8:42::2".parse().unwrap();
        let vx = OurSends::Vxlan { ports: vec![4789] };
        assert_eq!(packet_too_big_about(&p, local, &vx), Some((remote, 1400)));
        assert_eq!(packet_too_big_about(&p, remote, &vx), None, "not from us");
        let other_port = OurSends::Vxlan { ports: vec![8472] };
        assert_eq!(packet_too_big_about(&p, local, &other_port), None);
        assert_eq!(packet_too_big_about(&p, local, &OurSends::Ipip), None);
        let mut tiny = p.clone();
        tiny[4..8].copy_from_slice(&600u32.to_be_bytes());
        assert_eq!(
            packet_too_big_about(&tiny, local, &vx),
            Some((remote, 1280))
        );
        let mut unreachable = p.clone();
        unreachable[0] = 1;
        assert_eq!(packet_too_big_about(&unreachable, local, &vx), None);
        // Short of the quoted UDP destination port (8 + 40 + 4 bytes): nothing to go by.
        for n in 0..52 {
            assert_eq!(
                packet_too_big_about(&p[..n], local, &vx),
                None,
                "cut at {n}"
            );
        }
    }

    #[test]
    fn reads_frag_needed_about_our_sends_only() {
        let p = hex(KERNEL_FRAG_NEEDED);
        let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 201));
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 202));
        let vx = OurSends::Vxlan { ports: vec![4789] };
        assert_eq!(frag_needed_about(&p, local, &vx), Some((remote, 1400)));
        assert_eq!(frag_needed_about(&p, remote, &vx), None, "not from us");
        let other_port = OurSends::Vxlan { ports: vec![8472] };
        assert_eq!(frag_needed_about(&p, local, &other_port), None);
        // Several networks' ports: an error about a send to any of them counts.
        let both = OurSends::Vxlan {
            ports: vec![8472, 4789],
        };
        assert_eq!(frag_needed_about(&p, local, &both), Some((remote, 1400)));
        assert_eq!(
            frag_needed_about(&p, local, &OurSends::Ipip),
            None,
            "UDP, not IPIP"
        );
        // About IPv4 in IPv4 (protocol 4) or IPv6 in IPv4 (41): both IPIP's.
        for proto in [4u8, 41] {
            let mut q = p.clone();
            q[20 + 8 + 9] = proto;
            let about = frag_needed_about(&q, local, &OurSends::Ipip);
            assert_eq!(about, Some((remote, 1400)), "protocol {proto}");
        }
        let mut other = p.clone();
        other[21] = 1; // code 1: host unreachable
        assert_eq!(frag_needed_about(&other, local, &vx), None);
        for n in 0..p.len() {
            let _ = frag_needed_about(&p[..n], local, &vx);
        }
    }

    #[test]
    fn values_age_back_to_the_configured_mtu() {
        let p = PathMtus::new(1500);
        let t0 = Timestamp(5_000);
        p.learn(t0, R, 1400);
        let t1 = t0 + Duration::from_secs(300);
        assert_eq!(
            p.learn(t1, R, 1400),
            Learn::Refreshed,
            "lifetime starts again"
        );
        let t2 = t0 + PMTU_EXPIRES;
        assert_eq!(p.expire(t2), 0, "refreshed at t1");
        assert_eq!(p.get(R), 1400);
        assert_eq!(
            p.learned(t2),
            vec![LearnedMtu {
                remote: R,
                mtu: 1400,
                expires_in: Duration::from_secs(300),
            }]
        );
        let t3 = t1 + PMTU_EXPIRES;
        let g = p.generation();
        assert!(p.learned(t3).is_empty(), "not listed once its time is up");
        assert_eq!(p.expire(t3), 1);
        assert_eq!(p.get(R), 1500);
        assert!(p.generation() > g, "readers see the change");
        // An expired value not yet reaped does not keep a higher report out.
        p.learn(t3, R, 1300);
        let t4 = t3 + PMTU_EXPIRES + Duration::from_secs(1);
        assert_eq!(p.learn(t4, R, 1450), Learn::Lowered(1450));
    }
}
