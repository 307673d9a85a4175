//! The sans-IO IPIP tunnel for L3 mode: IPv4 packets from a TUN device (RFC 2003, protocol 4)
//! and, on a device with an IPv6 address, IPv6 packets (RFC 4213, protocol 41, what Linux's
//! `sit` device sends) are routed by longest-prefix match to a remote node and wrapped in an
//! outer IPv4 header; IPIP packets from the underlay are checked and their inner packet goes to
//! the device.
//!
//! No clock, no sockets: time comes in as `now`, buffers belong to the caller, and each call
//! returns one decision in the engines' calling convention (see [`super::engine`]). The wire
//! work is `encap`'s: the worker's [`Encapsulator`](super::encapsulator::Encapsulator) writes
//! the outer header (DF copied from the inner packet, ECN copied with CE sent as ECT(0), DSCP
//! inherited, TTL fixed) and [`encap::tunnel::ipip::decapsulate_mut`] validates a received
//! packet and applies the RFC 6040 decapsulation table.
//!
//! Rules beyond the codec's:
//! - Decapsulation is accepted only from a route next hop unless `allow_any_peer` (an open IPIP
//!   endpoint lets anyone inject packets: CVE-2020-10136). A source that can never be a tunnel
//!   endpoint (see [`super::UnusableRemote`]: our own address, loopback, multicast, broadcast,
//!   unspecified) is refused even then.
//! - TTL 0 (IPv6: hop limit 0) is refused both ways, and so is an inner IPv4 source equal to our
//!   underlay address. Neither is decremented here, as neither `ipip` nor `sit` does: the host
//!   forwards into and out of the device, decrementing and answering "time exceeded" itself.
//! - IPv6 needs an IPv6 address on the device ([`IpipSettings::ipv6`]): without one an IPv6
//!   packet is dropped both ways as `no_ipv6` (the daemon also turns IPv6 off on such a
//!   device, so the kernel sends it none of its own).
//! - IPv6 multicast from the device (the host's MLD reports: a device with IPv6 and no
//!   link-local address sends no other chatter) is dropped as the quiet `ipv6_multicast`.
//! - An IPv6 packet longer than the tunnel MTU gets an ICMPv6 "packet too big" carrying it
//!   (IPv6 is never fragmented on the way; below IPv6's minimum MTU of 1280 it is dropped).
//! - A packet longer than the tunnel MTU (underlay MTU - 20) with DF set is answered with an
//!   ICMP "fragmentation needed" carrying the tunnel MTU, for the device (so the sender's path
//!   MTU discovery works). Its source is the unreachable packet's destination: that address
//!   routes back through the tunnel device, so the host's reverse-path filter accepts it, and it
//!   is not one of the host's own addresses (which the kernel drops as martians when they come
//!   in through a device). Without DF the packet is dropped as `too_big`: the device's own MTU
//!   (the tunnel MTU by default) already makes the kernel fragment such packets before vtepd
//!   sees them, so this only happens when `--mtu` was set above the tunnel MTU.

use super::route::Routes;
use super::too_big::{self, Framing, TooBig};
use super::trace::{NoTrace, Step, Trace};
use super::{Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp};
use encap::ipv4::Ipv4Packet;
use encap::{Error, Invalid};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use encap::tunnel::ipip::OVERHEAD;

pub use super::too_big::ICMP_MAX;
/// The one network of an IPIP daemon (its TUN device).
pub const NET: NetId = NetId(0);

/// Settings of an IPIP tunnel.
#[derive(Debug, Clone)]
pub struct IpipSettings {
    /// Our underlay address: the outer source.
    pub local: Ipv4Addr,
    /// Accept decapsulation from any source.
    pub allow_any_peer: bool,
    /// Largest inner packet that fits the underlay (underlay MTU - 20).
    pub tunnel_mtu: u16,
    /// The device has an IPv6 address: IPv6 is carried (protocol 41).
    pub ipv6: bool,
}

/// The shared IPIP tunnel state: settings and the route table.
#[derive(Debug)]
pub struct Ipip {
    local: Ipv4Addr,
    allow_any_peer: AtomicBool,
    tunnel_mtu: u16,
    ipv6: bool,
    routes: Arc<Routes>,
}

fn reject<T>(ctr: &mut Counters, r: DropReason, f: impl FnOnce(DropReason) -> T) -> T {
    ctr.drop(r);
    f(r)
}

impl Ipip {
    /// A tunnel over `routes` (shared with the control plane, which edits it).
    pub fn new(settings: &IpipSettings, routes: Arc<Routes>) -> Ipip {
        Ipip {
            local: settings.local,
            allow_any_peer: AtomicBool::new(settings.allow_any_peer),
            tunnel_mtu: settings.tunnel_mtu,
            ipv6: settings.ipv6,
            routes,
        }
    }

    /// Our underlay address.
    pub fn local(&self) -> Ipv4Addr {
        self.local
    }

    /// The tunnel MTU.
    pub fn tunnel_mtu(&self) -> u16 {
        self.tunnel_mtu
    }

    /// The route table.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// Accepts (or stops accepting) decapsulation from sources that are not next hops.
    pub fn set_allow_any_peer(&self, on: bool) {
        self.allow_any_peer.store(on, Ordering::Relaxed);
    }

    /// Whether the device carries IPv6.
    pub fn ipv6(&self) -> bool {
        self.ipv6
    }

    /// An IPv4 (or IPv6) packet read from the device: routed to its remote node
    /// (`out.remotes`, for the worker's encapsulator), answered with an ICMP "fragmentation
    /// needed" (ICMPv6 "packet too big") when it does not fit the tunnel with DF set (the
    /// error in `out.generated`), or dropped.
    pub fn on_local(
        &self,
        now: Timestamp,
        pkt: &[u8],
        out: &mut Out,
        ctr: &mut Counters,
    ) -> FromDevice {
        self.on_local_traced(now, pkt, out, ctr, &mut NoTrace)
    }

    /// [`Ipip::on_local`], its steps recorded into `t`.
    pub fn on_local_traced<T: Trace>(
        &self,
        now: Timestamp,
        pkt: &[u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        ctr.rx_device += 1;
        out.remotes.reset(encap::Vni::ZERO);
        match pkt.first().map(|b| b >> 4) {
            Some(6) => return self.on_local6(now, pkt, out, ctr, t),
            Some(v) if v != 4 => return reject(ctr, DropReason::NotIpv4, FromDevice::Drop),
            _ => {}
        }
        let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
            return reject(ctr, DropReason::BadIpHeader, FromDevice::Drop);
        };
        if ip.ttl() == 0 {
            return reject(ctr, DropReason::TtlZero, FromDevice::Drop);
        }
        if ip.src() == self.local {
            return reject(ctr, DropReason::OwnSource, FromDevice::Drop);
        }
        let via = self.routes.load().lookup(ip.dst());
        t.step(Step::Route {
            dst: ip.dst().into(),
            via: via.map(Into::into),
        });
        let Some(dst) = via else {
            return reject(ctr, DropReason::NoRoute, FromDevice::Drop);
        };
        self.to_tunnel(now, pkt, usize::from(ip.total_len()), dst, out, ctr, t)
    }

    /// [`Ipip::on_local_traced`] for an IPv6 packet (protocol 41): out of line, so that the
    /// IPv4 path stays the code it was.
    #[inline(never)]
    fn on_local6<T: Trace>(
        &self,
        now: Timestamp,
        pkt: &[u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        if !self.ipv6 {
            return reject(ctr, DropReason::NoIpv6, FromDevice::Drop);
        }
        let Ok(ip) = encap::tunnel::ipip::inner_ipv6(pkt) else {
            return reject(ctr, DropReason::BadIpHeader, FromDevice::Drop);
        };
        if ip.hop_limit == 0 {
            return reject(ctr, DropReason::TtlZero, FromDevice::Drop);
        }
        let dst = ipv6_at(pkt, 24);
        if dst.is_multicast() {
            return reject(ctr, DropReason::Ipv6Multicast, FromDevice::Drop);
        }
        let via = self.routes.load().lookup6(dst);
        t.step(Step::Route {
            dst: dst.into(),
            via,
        });
        // A next hop is an IPv4 underlay address (the table refuses others).
        let Some(IpAddr::V4(via)) = via else {
            return reject(ctr, DropReason::NoRoute, FromDevice::Drop);
        };
        self.to_tunnel(now, pkt, ip.len, via, out, ctr, t)
    }

    /// A routed packet of `len` bytes to `dst`: within the tunnel MTU, to the tunnel;
    /// else answered or dropped (see [`too_big::on_too_big`]).
    #[allow(clippy::too_many_arguments)] // the engine's inputs and outputs, as its callers'
    #[inline]
    fn to_tunnel<T: Trace>(
        &self,
        now: Timestamp,
        pkt: &[u8],
        len: usize,
        dst: Ipv4Addr,
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        if len > usize::from(self.tunnel_mtu) {
            let mtu = usize::from(self.tunnel_mtu);
            t.step(Step::TooBig {
                len: len as u32,
                mtu: mtu as u32,
            });
            return match too_big::on_too_big(now, Framing::Ip, pkt, mtu, false, out, ctr) {
                TooBig::Answered => FromDevice::Answered,
                _ => FromDevice::Drop(DropReason::TooBig),
            };
        }
        out.remotes.push(dst.into());
        FromDevice::Tunnel
    }

    /// An IPIP packet (protocol 4 or 41) from the underlay, from its outer IPv4 header on (as a
    /// raw IPv4 socket delivers it: the header's source is the one checked, the outer TOS is
    /// read from it). Delivered, its inner ECN field combined with the outer one (RFC 6040), or
    /// dropped.
    pub fn on_remote(
        &self,
        _now: Timestamp,
        _outer: Outer,
        packet: &mut [u8],
        ctr: &mut Counters,
    ) -> FromTunnel {
        self.on_remote_traced(_now, _outer, packet, ctr, &mut NoTrace)
    }

    /// [`Ipip::on_remote`], its steps recorded into `t`.
    pub fn on_remote_traced<T: Trace>(
        &self,
        _now: Timestamp,
        _outer: Outer,
        packet: &mut [u8],
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        ctr.rx_tunnel += 1;
        // Inner bytes: without the outer header (its IHL words; 20 bytes if unreadable).
        let outer = packet.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
        ctr.rx_tunnel_bytes += packet.len().saturating_sub(outer) as u64;
        let Some(src) = packet
            .get(12..16)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        else {
            return reject(ctr, DropReason::BadIpip, FromTunnel::Drop);
        };
        let any_peer = self.allow_any_peer.load(Ordering::Relaxed);
        let accepted = super::UnusableRemote::usable_v4(self.local, src)
            && (any_peer || self.routes.load().is_next_hop(src));
        t.step(Step::Peer {
            src: src.into(),
            accepted,
            any_peer,
        });
        if !accepted {
            return reject(ctr, DropReason::UnknownPeer, FromTunnel::Drop);
        }
        let rx = match encap::tunnel::ipip::decapsulate_mut(packet) {
            Ok(rx) => rx,
            Err(e) => {
                let r = if invalid_reason(&e) == Some(Invalid::EcnCeOverNotEct) {
                    DropReason::EcnDrop
                } else {
                    DropReason::BadIpip
                };
                return reject(ctr, r, FromTunnel::Drop);
            }
        };
        let inner = &packet[rx.inner.clone()];
        if inner.first().is_some_and(|b| b >> 4 == 6) {
            // Protocol 41: the codec checked the IPv6 header is there.
            if !self.ipv6 {
                return reject(ctr, DropReason::NoIpv6, FromTunnel::Drop);
            }
            if inner.get(7) == Some(&0) {
                return reject(ctr, DropReason::TtlZero, FromTunnel::Drop);
            }
        } else {
            let inner = Ipv4Packet::new_unchecked(inner);
            if inner.ttl() == 0 {
                return reject(ctr, DropReason::TtlZero, FromTunnel::Drop);
            }
            if inner.src() == self.local {
                return reject(ctr, DropReason::OwnSource, FromTunnel::Drop);
            }
        }
        FromTunnel::Deliver {
            net: NET,
            range: rx.inner,
        }
    }
}

/// The IPv6 address at `at` in `p`, whose header [`encap::tunnel::ipip::inner_ipv6`] checked.
fn ipv6_at(p: &[u8], at: usize) -> Ipv6Addr {
    p.get(at..at + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

/// The `Invalid` reason of a codec error, if it is one.
fn invalid_reason(e: &Error) -> Option<Invalid> {
    match e {
        Error::Invalid { reason, .. } => Some(*reason),
        Error::Truncated { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::encapsulator::{Encapsulator, TunnelConfig};
    use crate::core::route::Route;
    use encap::IpipConfig;
    use encap::checksum;
    use encap::ipv4::{Ipv4Repr, protocol};
    use encap::tunnel::ipip::decapsulate;

    /// A worker's side of the engine, as the IPIP worker holds it.
    struct Tx {
        out: Out,
        enc: Encapsulator,
    }

    impl Tx {
        fn new(seed: u16) -> Tx {
            Tx {
                out: Out::default(),
                enc: Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(A)), seed, 1500),
            }
        }
        /// The ICMP error the last decision answered with.
        fn reply(&self) -> &[u8] {
            self.out.generated.iter().last().map_or(&[][..], |(_, f)| f)
        }
    }

    impl Default for Tx {
        fn default() -> Tx {
            Tx::new(0)
        }
    }

    /// What the worker does with a packet it read: the engine's decision, then (to the tunnel)
    /// the encapsulation in place.
    #[derive(Debug, PartialEq, Eq)]
    enum LocalVerdict {
        ToTunnel {
            dst: crate::core::Remote,
            range: std::ops::Range<usize>,
        },
        Reply,
        Drop(DropReason),
    }

    fn on_local_ip(
        t: &Ipip,
        now: Timestamp,
        buf: &mut [u8],
        off: usize,
        len: usize,
        tx: &mut Tx,
        ctr: &mut Counters,
    ) -> LocalVerdict {
        tx.out.generated.clear();
        let pkt = off
            .checked_add(len)
            .and_then(|e| buf.get(off..e))
            .unwrap_or(&[]);
        match t.on_local(now, pkt, &mut tx.out, ctr) {
            FromDevice::Tunnel => {
                let dst = tx.out.remotes.as_slice()[0];
                match tx.enc.encapsulate(buf, off, len, encap::Vni::ZERO, dst) {
                    Ok(range) => LocalVerdict::ToTunnel { dst, range },
                    Err(r) => {
                        ctr.drop(r);
                        LocalVerdict::Drop(r)
                    }
                }
            }
            FromDevice::Answered => LocalVerdict::Reply,
            FromDevice::Drop(r) => LocalVerdict::Drop(r),
            FromDevice::Held => panic!("IPIP never holds a packet"),
        }
    }

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const POD_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
    const POD_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 7);
    const HEAD: usize = OVERHEAD;

    fn tunnel(local: Ipv4Addr, via: Ipv4Addr, block: &str) -> Ipip {
        tunnel_of(local, via, &[block], false, 1480)
    }

    /// A tunnel routing each of `blocks` to `via`, carrying IPv6 when `ipv6`.
    fn tunnel_of(local: Ipv4Addr, via: Ipv4Addr, blocks: &[&str], ipv6: bool, mtu: u16) -> Ipip {
        let routes: Vec<Route> = blocks
            .iter()
            .map(|b| Route {
                prefix: b.parse().unwrap(),
                via: via.into(),
            })
            .collect();
        let routes = Routes::with_routes(local, ipv6, &routes).unwrap();
        Ipip::new(
            &IpipSettings {
                local,
                allow_any_peer: false,
                tunnel_mtu: mtu,
                ipv6,
            },
            Arc::new(routes),
        )
    }

    /// An IPv4/UDP-ish packet of `len` bytes in a buffer with headroom; returns the buffer.
    fn packet(src: Ipv4Addr, dst: Ipv4Addr, len: usize, tos: u8, df: bool, ttl: u8) -> Vec<u8> {
        let mut buf = vec![0u8; HEAD + len];
        Ipv4Repr {
            src,
            dst,
            protocol: protocol::UDP,
            tos,
            ident: 77,
            dont_frag: df,
            ttl,
            payload_len: len - 20,
        }
        .emit(&mut buf[HEAD..])
        .unwrap();
        for (i, b) in buf[HEAD + 20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        buf
    }

    fn send(t: &Ipip, buf: &mut [u8], tx: &mut Tx, ctr: &mut Counters) -> LocalVerdict {
        let len = buf.len() - HEAD;
        on_local_ip(t, Timestamp(1000), buf, HEAD, len, tx, ctr)
    }

    #[test]
    fn encapsulates_by_route_with_df_ecn_and_ttl() {
        let t = tunnel(A, B, "10.0.2.0/26");
        let mut tx = Tx::new(1);
        let mut ctr = Counters::default();
        for (df, tos, want_outer_ecn) in
            [(true, 0x02, 0x02), (false, 0x03, 0x02), (true, 0xb9, 0x01)]
        {
            let mut buf = packet(POD_A, POD_B, 100, tos, df, 63);
            let inner = buf[HEAD..].to_vec();
            let LocalVerdict::ToTunnel { dst, range } = send(&t, &mut buf, &mut tx, &mut ctr)
            else {
                panic!("not tunnelled");
            };
            assert_eq!(dst, B);
            assert_eq!(range, 0..HEAD + 100);
            let out = &buf[range];
            let rx = decapsulate(out).unwrap();
            assert_eq!((rx.src, rx.dst), (A, B));
            assert_eq!(rx.dont_frag, df, "outer DF copies the inner DF");
            assert_eq!(rx.tos & 3, want_outer_ecn, "ECN copied, CE sent as ECT(0)");
            assert_eq!(rx.tos & 0xfc, tos & 0xfc, "DSCP inherited");
            assert_eq!(rx.ttl, 64);
            assert_eq!(&out[rx.inner], &inner[..], "inner packet untouched");
        }
        assert_eq!(ctr.rx_device, 3);
        assert_eq!(ctr.total_drops(), 0);
    }

    /// Sends each packet: each must be dropped for its reason, and counted.
    fn all_dropped(t: &Ipip, cases: Vec<(Vec<u8>, DropReason)>, tx: &mut Tx, ctr: &mut Counters) {
        for (i, (mut buf, why)) in cases.into_iter().enumerate() {
            assert_eq!(
                send(t, &mut buf, tx, ctr),
                LocalVerdict::Drop(why),
                "case {i}"
            );
            assert!(ctr.drops_of(why) > 0, "case {i}");
        }
    }

    #[test]
    fn local_rules_drop_and_count() {
        let t = tunnel(A, B, "10.0.2.0/26");
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (packet(POD_A, POD_B, 60, 0, true, 0), DropReason::TtlZero),
            (packet(A, POD_B, 60, 0, true, 9), DropReason::OwnSource),
            (
                packet(POD_A, Ipv4Addr::new(10, 0, 3, 1), 60, 0, true, 9),
                DropReason::NoRoute,
            ),
            (
                {
                    let mut v = vec![0u8; HEAD + 40];
                    v[HEAD] = 0x60;
                    v
                },
                DropReason::NoIpv6,
            ),
            (
                {
                    let mut v = vec![0u8; HEAD + 40];
                    v[HEAD] = 0x50;
                    v
                },
                DropReason::NotIpv4,
            ),
            (
                {
                    let mut v = packet(POD_A, POD_B, 60, 0, true, 9);
                    v[HEAD + 3] = 200; // total length past the packet
                    v
                },
                DropReason::BadIpHeader,
            ),
            (
                {
                    let mut v = vec![0u8; HEAD + 3];
                    v[HEAD] = 0x45;
                    v
                },
                DropReason::BadIpHeader,
            ),
        ];
        all_dropped(&t, cases, &mut tx, &mut ctr);
        assert_eq!(ctr.total_drops(), 7);
        // An empty read is a bad header too, never a panic.
        let mut empty = vec![0u8; HEAD];
        assert_eq!(
            on_local_ip(&t, Timestamp(0), &mut empty, HEAD, 0, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::BadIpHeader)
        );
        assert_eq!(
            on_local_ip(&t, Timestamp(0), &mut empty, HEAD, 99, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::BadIpHeader)
        );
    }

    #[test]
    fn oversize_df_gets_frag_needed_with_the_tunnel_mtu() {
        let t = tunnel(A, B, "10.0.2.0/26");
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let mut buf = packet(POD_A, POD_B, 1500, 0, true, 63);
        let orig = buf[HEAD..].to_vec();
        assert_eq!(send(&t, &mut buf, &mut tx, &mut ctr), LocalVerdict::Reply);
        assert_eq!(ctr.drops_of(DropReason::TooBig), 1);
        let r = tx.reply();
        assert_eq!(r.len(), ICMP_MAX);
        let ip = Ipv4Packet::new_checked(r).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), protocol::ICMP);
        assert_eq!((ip.src(), ip.dst()), (POD_B, POD_A));
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1480);
        assert!(checksum::verify(icmp));
        assert_eq!(&icmp[8..], &orig[..icmp.len() - 8], "quotes the packet");

        // Without DF: dropped, no reply.
        let mut buf = packet(POD_A, POD_B, 1500, 0, false, 63);
        assert_eq!(
            send(&t, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::TooBig)
        );
        // Exactly the tunnel MTU fits.
        let mut buf = packet(POD_A, POD_B, 1480, 0, true, 63);
        assert!(matches!(
            send(&t, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::ToTunnel { .. }
        ));
        // Never an ICMP error about an ICMP error.
        let mut buf = packet(POD_A, POD_B, 1500, 0, true, 63);
        buf[HEAD + 9] = protocol::ICMP;
        buf[HEAD + 20] = 3;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[HEAD..]);
        p.fill_checksum();
        assert_eq!(
            send(&t, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::TooBig)
        );
    }

    #[test]
    fn frag_needed_is_rate_limited() {
        let t = tunnel(A, B, "10.0.2.0/26");
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let mut replies = 0;
        for _ in 0..100 {
            let mut buf = packet(POD_A, POD_B, 1500, 0, true, 63);
            if send(&t, &mut buf, &mut tx, &mut ctr) == LocalVerdict::Reply {
                replies += 1;
            }
        }
        assert_eq!(replies, crate::core::engine::IcmpBudget::BURST);
        assert_eq!(ctr.drops_of(DropReason::TooBig), 100);
        // Time refills the bucket.
        let mut buf = packet(POD_A, POD_B, 1500, 0, true, 63);
        let v = on_local_ip(&t, Timestamp(5000), &mut buf, HEAD, 1500, &mut tx, &mut ctr);
        assert_eq!(v, LocalVerdict::Reply);
    }

    /// Node A's packet, encapsulated, as B receives it.
    fn wire(inner_tos: u8, outer_ecn: Option<u8>, ttl: u8) -> Vec<u8> {
        let a = tunnel(A, B, "10.0.2.0/26");
        let mut buf = packet(POD_A, POD_B, 100, inner_tos, true, ttl.max(1));
        if ttl == 0 {
            buf[HEAD + 8] = 0;
            Ipv4Packet::new_unchecked(&mut buf[HEAD..]).fill_checksum();
            let r = Ipv4Repr {
                src: A,
                dst: B,
                protocol: protocol::IPIP,
                tos: 0,
                ident: 1,
                dont_frag: true,
                ttl: 64,
                payload_len: 100,
            };
            r.emit(&mut buf[..HEAD]).unwrap();
            return buf;
        }
        let v = send(&a, &mut buf, &mut Tx::default(), &mut Counters::default());
        let LocalVerdict::ToTunnel { range, .. } = v else {
            panic!("{v:?}")
        };
        let mut out = buf[range].to_vec();
        set_outer_ecn(&mut out, outer_ecn);
        out
    }

    #[test]
    fn decapsulates_only_from_next_hops() {
        let b = tunnel(B, A, "10.0.1.0/26");
        let mut ctr = Counters::default();
        let mut p = wire(0, None, 64);
        let inner = p[HEAD..].to_vec();
        let v = b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr);
        assert_eq!(
            v,
            FromTunnel::Deliver {
                net: NET,
                range: HEAD..HEAD + 100
            }
        );
        assert_eq!(&p[HEAD..], &inner[..]);

        // From a node that is no next hop: refused unless allow_any_peer.
        let c = tunnel(B, Ipv4Addr::new(192, 0, 2, 9), "10.0.1.0/26");
        let mut p = wire(0, None, 64);
        assert_eq!(
            c.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Drop(DropReason::UnknownPeer)
        );
        c.set_allow_any_peer(true);
        assert!(matches!(
            c.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Deliver { .. }
        ));
        // Our own address as the outer source is never accepted.
        let mut p = wire(0, None, 64);
        p[12..16].copy_from_slice(&B.octets());
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        assert_eq!(
            c.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Drop(DropReason::UnknownPeer)
        );
        assert_eq!(ctr.drops_of(DropReason::UnknownPeer), 2);
        assert_eq!(ctr.rx_tunnel, 4);
    }

    #[test]
    fn decapsulation_rules() {
        let b = tunnel(B, A, "10.0.1.0/26");
        let mut ctr = Counters::default();
        // RFC 6040: outer CE over inner ECT(0) marks the inner packet CE.
        let mut p = wire(0x02, Some(0x03), 64);
        let FromTunnel::Deliver { range, .. } =
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr)
        else {
            panic!()
        };
        let inner = Ipv4Packet::new_checked(&p[range]).unwrap();
        assert_eq!(inner.tos() & 3, 3);
        assert!(inner.verify_checksum());
        // Outer CE over inner Not-ECT: dropped.
        let mut p = wire(0x00, Some(0x03), 64);
        assert_eq!(
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Drop(DropReason::EcnDrop)
        );
        // Inner TTL 0.
        let mut p = wire(0, None, 0);
        assert_eq!(
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Drop(DropReason::TtlZero)
        );
        // Bad outer checksum, truncation, garbage.
        let mut p = wire(0, None, 64);
        p[10] ^= 0xff;
        assert_eq!(
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Drop(DropReason::BadIpip)
        );
        let mut p = wire(0, None, 64);
        for cut in [0, 5, 19, 20, 30, 60] {
            let mut short = p[..cut].to_vec();
            let v = b.on_remote(Timestamp(0), A.into(), &mut short, &mut ctr);
            assert!(matches!(v, FromTunnel::Drop(_)), "cut {cut}: {v:?}");
        }
        p.truncate(HEAD + 100);
        assert!(matches!(
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
            FromTunnel::Deliver { .. }
        ));
        assert_eq!(ctr.drops_of(DropReason::EcnDrop), 1);
        assert_eq!(ctr.drops_of(DropReason::TtlZero), 1);
    }

    #[test]
    fn route_changes_apply_at_once() {
        let t = tunnel(A, B, "10.0.2.0/26");
        let c = Ipv4Addr::new(192, 0, 2, 3);
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let to = |t: &Ipip, tx: &mut Tx, ctr: &mut Counters| {
            let mut buf = packet(POD_A, Ipv4Addr::new(10, 0, 3, 4), 60, 0, true, 9);
            send(t, &mut buf, tx, ctr)
        };
        assert_eq!(
            to(&t, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::NoRoute)
        );
        t.routes()
            .add(Route {
                prefix: "10.0.3.0/26".parse().unwrap(),
                via: c.into(),
            })
            .unwrap();
        assert!(matches!(
            to(&t, &mut tx, &mut ctr),
            LocalVerdict::ToTunnel { dst, .. } if dst == c
        ));
        t.routes().del("10.0.3.0/26".parse().unwrap());
        assert_eq!(
            to(&t, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::NoRoute)
        );
    }

    const POD6_A: &str = "fd00:1::5";
    const POD6_B: &str = "fd00:2::7";

    /// A dual-stack node: its pod blocks 10.0.2.0/26 and fd00:2::/64 behind `via`.
    fn tunnel6(local: Ipv4Addr, via: Ipv4Addr, mtu: u16) -> Ipip {
        tunnel_of(local, via, &["10.0.2.0/26", "fd00:2::/64"], true, mtu)
    }

    /// An IPv6 packet of `len` bytes (UDP-ish payload) in a buffer with headroom.
    fn packet6(src: &str, dst: &str, len: usize, tc: u8, hop_limit: u8) -> Vec<u8> {
        let mut buf = vec![0u8; HEAD + len];
        let p = &mut buf[HEAD..];
        p[0] = 0x60 | (tc >> 4);
        p[1] = tc << 4;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = protocol::UDP;
        p[7] = hop_limit;
        p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        buf
    }

    #[test]
    fn ipv6_goes_by_route_as_protocol_41() {
        let t = tunnel6(A, B, 1480);
        let mut tx = Tx::new(1);
        let mut ctr = Counters::default();
        let mut buf = packet6(POD6_A, POD6_B, 100, 0xb9, 63);
        let inner = buf[HEAD..].to_vec();
        let LocalVerdict::ToTunnel { dst, range } = send(&t, &mut buf, &mut tx, &mut ctr) else {
            panic!("not tunnelled");
        };
        assert_eq!(dst, B);
        let out = &buf[range];
        let rx = decapsulate(out).unwrap();
        assert_eq!((rx.src, rx.dst, out[9]), (A, B, 41));
        assert!(rx.dont_frag, "IPv6 is never fragmented on the way: DF");
        assert_eq!(rx.tos, 0xb9, "DSCP from the traffic class, ECT(1) copied");
        assert_eq!(&out[rx.inner], &inner[..], "inner untouched: hop limit 63");
        // IPv4 still goes as protocol 4 beside it.
        let mut buf = packet(POD_A, POD_B, 100, 0, true, 63);
        let LocalVerdict::ToTunnel { range, .. } = send(&t, &mut buf, &mut tx, &mut ctr) else {
            panic!("not tunnelled");
        };
        assert_eq!(buf[range][9], 4);
        assert_eq!(ctr.total_drops(), 0);
    }

    #[test]
    fn ipv6_rules_drop_and_count() {
        let t = tunnel6(A, B, 1480);
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let long_payload = {
            let mut v = packet6(POD6_A, POD6_B, 60, 0, 9);
            v[HEAD + 5] = 21; // payload length past the packet
            v
        };
        let cases = [
            (packet6(POD6_A, POD6_B, 60, 0, 0), DropReason::TtlZero),
            (packet6(POD6_A, "fd00:3::1", 60, 0, 9), DropReason::NoRoute),
            (
                packet6("::", "ff02::16", 60, 0, 1),
                DropReason::Ipv6Multicast,
            ),
            (long_payload, DropReason::BadIpHeader),
            (
                packet6(POD6_A, POD6_B, 60, 0, 9)[..HEAD + 39].to_vec(),
                DropReason::BadIpHeader,
            ),
        ];
        all_dropped(&t, cases.to_vec(), &mut tx, &mut ctr);
        assert_eq!(ctr.total_drops(), 5);
        // A network without IPv6 drops it under its own reason.
        let v4 = tunnel(A, B, "10.0.2.0/26");
        let mut buf = packet6(POD6_A, POD6_B, 60, 0, 9);
        assert_eq!(
            send(&v4, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::NoIpv6)
        );
        assert_eq!(ctr.drops_of(DropReason::NoIpv6), 1);
    }

    #[test]
    fn oversize_ipv6_gets_packet_too_big_with_the_tunnel_mtu() {
        let t = tunnel6(A, B, 1480);
        let mut tx = Tx::default();
        let mut ctr = Counters::default();
        let mut buf = packet6(POD6_A, POD6_B, 1481, 0, 63);
        let orig = buf[HEAD..].to_vec();
        assert_eq!(send(&t, &mut buf, &mut tx, &mut ctr), LocalVerdict::Reply);
        assert_eq!((ctr.drops_of(DropReason::TooBig), ctr.icmp_too_big), (1, 1));
        let r = tx.reply();
        assert_eq!(
            r.len(),
            crate::core::too_big::IPV6_MIN_MTU,
            "as much as fits 1280"
        );
        assert_eq!((r[0] >> 4, r[6]), (6, 58), "IPv6, ICMPv6");
        assert_eq!(&r[8..24], &orig[24..40], "from the unreachable destination");
        assert_eq!(&r[24..40], &orig[8..24], "to the sender");
        let icmp = &r[40..];
        assert_eq!((icmp[0], icmp[1]), (2, 0), "packet too big");
        assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1480);
        assert_eq!(&icmp[8..], &orig[..icmp.len() - 8], "quotes the packet");
        let mut pseudo = r[8..40].to_vec();
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        let sum = checksum::add(checksum::sum(&pseudo), checksum::sum(icmp));
        assert_eq!(checksum::fold(sum), 0xffff, "ICMPv6 checksum");
        // Exactly the tunnel MTU fits.
        let mut buf = packet6(POD6_A, POD6_B, 1480, 0, 63);
        assert!(matches!(
            send(&t, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::ToTunnel { .. }
        ));
        // Below IPv6's minimum MTU no answer can help: dropped.
        let narrow = tunnel6(A, B, 1200);
        let mut buf = packet6(POD6_A, POD6_B, 1201, 0, 63);
        assert_eq!(
            send(&narrow, &mut buf, &mut tx, &mut ctr),
            LocalVerdict::Drop(DropReason::TooBig)
        );
    }

    /// Node A's IPv6 packet, encapsulated (outer ECN set to `outer_ecn` when given), as B
    /// receives it.
    fn wire6(tc: u8, outer_ecn: Option<u8>, hop_limit: u8) -> Vec<u8> {
        let a = tunnel6(A, B, 1480);
        let mut buf = packet6(POD6_A, POD6_B, 100, tc, hop_limit.max(1));
        let v = send(&a, &mut buf, &mut Tx::default(), &mut Counters::default());
        let LocalVerdict::ToTunnel { range, .. } = v else {
            panic!("{v:?}")
        };
        let mut out = buf[range].to_vec();
        out[HEAD + 7] = hop_limit;
        set_outer_ecn(&mut out, outer_ecn);
        out
    }

    /// Sets the outer header's ECN field, when given (its checksum made again).
    fn set_outer_ecn(out: &mut [u8], ecn: Option<u8>) {
        if let Some(e) = ecn {
            out[1] = (out[1] & 0xfc) | e;
            Ipv4Packet::new_unchecked(&mut out[..]).fill_checksum();
        }
    }

    #[test]
    fn ipv6_decapsulation_rules() {
        let b = tunnel_of(B, A, &["10.0.1.0/26", "fd00:1::/64"], true, 1480);
        let mut ctr = Counters::default();
        let mut p = wire6(0x02, Some(0x03), 64);
        let FromTunnel::Deliver { range, .. } =
            b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr)
        else {
            panic!("not delivered")
        };
        assert_eq!(range, HEAD..HEAD + 100);
        assert_eq!(
            p[HEAD + 1] >> 4 & 3,
            3,
            "RFC 6040: outer CE marks the inner ECT(0) CE"
        );
        let cases = [
            (wire6(0x00, Some(0x03), 64), DropReason::EcnDrop),
            (wire6(0x00, None, 0), DropReason::TtlZero),
        ];
        for (mut p, why) in cases {
            assert_eq!(
                b.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr),
                FromTunnel::Drop(why)
            );
        }
        // From a stranger, and into a network without IPv6.
        let c = tunnel_of(B, Ipv4Addr::new(192, 0, 2, 9), &["fd00:1::/64"], true, 1480);
        assert_eq!(
            c.on_remote(Timestamp(0), A.into(), &mut wire6(0, None, 64), &mut ctr),
            FromTunnel::Drop(DropReason::UnknownPeer)
        );
        let v4 = tunnel(B, A, "10.0.1.0/26");
        assert_eq!(
            v4.on_remote(Timestamp(0), A.into(), &mut wire6(0, None, 64), &mut ctr),
            FromTunnel::Drop(DropReason::NoIpv6)
        );
        assert_eq!(ctr.rx_tunnel, 5);
    }

    proptest::proptest! {
        /// Any bytes from either side: a verdict, never a panic.
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let t = tunnel6(A, B, 1480);
            t.set_allow_any_peer(true);
            let mut ctr = Counters::default();
            let mut buf = vec![0u8; HEAD];
            buf.extend_from_slice(&data);
            let len = data.len();
            let _ = on_local_ip(&t, Timestamp(0), &mut buf, HEAD, len, &mut Tx::default(), &mut ctr);
            let mut p = data.clone();
            let _ = t.on_remote(Timestamp(0), A.into(), &mut p, &mut ctr);
        }
    }
}
