//! Encapsulation for both tunnels in one place: a worker's [`Encapsulator`] writes the outer
//! headers (VXLAN: IPv4 + UDP + VXLAN; IPIP: IPv4) in front of a packet, in place, from a
//! per-remote header template of `encap`'s ([`VxlanEncap`], [`IpipEncap`]), and says why when it
//! cannot (the one mapping of codec errors to drop reasons).
//!
//! It knows the outer size, so it is also the one place that checks it against what the underlay
//! carries: an encapsulated packet longer than the path MTU toward its remote (the underlay MTU,
//! or less where [`PathMtus`] learned less) is refused as [`DropReason::TooBig`] before any send
//! is tried (the kernel would refuse it with EMSGSIZE, or a UDP GSO send with EINVAL); the
//! caller then answers or cuts the packet ([`super::too_big`]). Each cached template carries
//! its remote's path MTU, read again only when the shared table's generation moved.
//!
//! The outer-header policy (TTL, TOS, DF, source ports, UDP checksum) may differ between
//! networks ([`Encapsulator::with_network`]); it is resolved into the template once, so a packet
//! only pays for it in the fields that are inherited from the inner packet. With one policy for
//! every network (the common case) a packet costs no look-up by VNI.
//!
//! One per worker (it owns the template cache and the IPIP ID counter), so nothing is shared on
//! the packet path. The cache only allocates when a remote is first seen, and is emptied (not
//! freed) at [`MAX_TEMPLATES`].

use super::DropReason;
use super::Remote;
use super::pmtu::PathMtus;
use encap::{
    Error, Invalid, IpipConfig, IpipEncap, Layer, Vni, Vxlan6Encap, VxlanConfig, VxlanEncap,
    VxlanTx,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::Arc;

/// Remotes whose header template is cached; the cache is emptied (not freed) when full.
pub const MAX_TEMPLATES: usize = 4096;

/// Which tunnel, with its outer header settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelConfig {
    /// VXLAN over IPv4/UDP (RFC 7348).
    Vxlan(VxlanConfig),
    /// IPv4 in IPv4 (RFC 2003).
    Ipip(IpipConfig),
}

/// A header template toward an IPv4 remote.
#[derive(Debug, Clone)]
enum Template {
    Vxlan(VxlanEncap),
    Ipip(IpipEncap),
}

/// A remote's cached header template and the largest outer packet its path carries. IPv4 and
/// IPv6 remotes have maps (and value types) of their own, so the IPv4 path hashes, compares and
/// copies the 4-byte address it did before IPv6 existed (measured: one map keyed by `IpAddr`
/// cost the IPv4 encapsulation 1.3-1.8x).
#[derive(Debug, Clone)]
struct Cached<T> {
    template: T,
    max_outer: usize,
}

impl Cached<Template> {
    /// The template toward `dst` with `cfg` (none when `over_ipv6`), and its path's limit. Out of line: it runs once
    /// per remote, and keeps the per-packet path small enough to be inlined where it is called.
    #[cold]
    #[inline(never)]
    fn new(
        cfg: &TunnelConfig,
        over_ipv6: bool,
        dst: Ipv4Addr,
        pmtu: &PathMtus,
        max_outer: usize,
    ) -> Result<Cached<Template>, DropReason> {
        if over_ipv6 {
            // A remote of the other family than our own address: the core never sends to one
            // (one address family per network). No IPv4 template exists while over IPv6
            // (`over_ipv6` empties the cache), so the check costs the per-packet path nothing.
            return Err(DropReason::EncapError);
        }
        let t = match cfg {
            TunnelConfig::Vxlan(c) => VxlanEncap::new(c, dst).map(Template::Vxlan),
            TunnelConfig::Ipip(c) => IpipEncap::new(c, dst).map(Template::Ipip),
        };
        Ok(Cached {
            template: t.map_err(|e| drop_reason(&e))?,
            max_outer: usize::from(pmtu.get(dst.into())).min(max_outer),
        })
    }
}

impl Cached<Vxlan6Encap> {
    /// The VXLAN-over-IPv6 template from `local` toward `dst` with `cfg` (IPIP has no IPv6
    /// underlay), and its path's limit.
    #[cold]
    #[inline(never)]
    fn new6(
        cfg: &TunnelConfig,
        local: Ipv6Addr,
        dst: Ipv6Addr,
        pmtu: &PathMtus,
        max_outer: usize,
    ) -> Result<Cached<Vxlan6Encap>, DropReason> {
        let TunnelConfig::Vxlan(c) = cfg else {
            return Err(DropReason::EncapError);
        };
        Ok(Cached {
            template: Vxlan6Encap::new(c, local, dst).map_err(|e| drop_reason(&e))?,
            max_outer: usize::from(pmtu.get(dst.into())).min(max_outer),
        })
    }
}

/// Templates by (index in the configurations, remote), emptied (not freed) when full.
type Templates<A, T> = HashMap<(u16, A), Cached<T>, ahash::RandomState>;

/// The cached entry of `key`, made by `make` when missing.
#[inline]
fn template<A: Copy + Eq + std::hash::Hash, T>(
    map: &mut Templates<A, T>,
    key: (u16, A),
    make: impl FnOnce() -> Result<Cached<T>, DropReason>,
) -> Result<&mut Cached<T>, DropReason> {
    if map.len() >= MAX_TEMPLATES && !map.contains_key(&key) {
        map.clear();
    }
    Ok(match map.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => v.insert(make()?),
    })
}

/// A worker's encapsulator: header templates by remote (each with its path MTU), the IPIP
/// outer IP ID counter, and the largest outer packet the underlay carries.
#[derive(Debug)]
pub struct Encapsulator {
    /// The distinct outer header settings; `[0]` serves every network `by_vni` does not name.
    cfgs: Vec<TunnelConfig>,
    /// Networks whose settings differ from `cfgs[0]`: their index in `cfgs`.
    by_vni: HashMap<Vni, u16, ahash::RandomState>,
    /// Templates (each with its path MTU) by (index in `cfgs`, remote), per address family.
    templates: Templates<Ipv4Addr, Template>,
    templates6: Templates<Ipv6Addr, Vxlan6Encap>,
    next_id: u16,
    /// The underlay MTU (at most 65535, the largest IPv4 packet).
    max_outer: usize,
    /// The path MTUs shared with the other workers, and the generation the cache reflects.
    pmtu: Arc<PathMtus>,
    generation: u64,
    /// Our address on an IPv6 underlay (VXLAN over IPv6 to IPv6 remotes); `None`: IPv4.
    local6: Option<Ipv6Addr>,
}

impl Encapsulator {
    /// An encapsulator for `cfg` over an underlay of MTU `underlay_mtu` (no outer packet is
    /// longer) with path MTUs of its own; `id_seed` starts the outer IP ID counter of IPIP
    /// (give each worker its own). VXLAN packets carry ID 0: with DF set any ID will do
    /// (RFC 6864 §4.1), and with DF clear the kernel fills in a zero ID on the raw socket.
    pub fn new(cfg: TunnelConfig, id_seed: u16, underlay_mtu: u32) -> Encapsulator {
        Encapsulator::with_path_mtus(cfg, id_seed, Arc::new(PathMtus::new(underlay_mtu)))
    }

    /// An encapsulator whose outer packets to each remote fit that remote's path MTU in `pmtu`
    /// (shared by the workers; its configured MTU is the underlay's).
    pub fn with_path_mtus(cfg: TunnelConfig, id_seed: u16, pmtu: Arc<PathMtus>) -> Encapsulator {
        Encapsulator {
            cfgs: vec![cfg],
            by_vni: HashMap::default(),
            templates: HashMap::with_capacity_and_hasher(64, ahash::RandomState::new()),
            templates6: HashMap::default(),
            next_id: id_seed,
            max_outer: usize::from(pmtu.configured()),
            generation: pmtu.generation(),
            pmtu,
            local6: None,
        }
    }

    /// VXLAN over an IPv6 underlay from `local`: outer IPv6 headers to IPv6 remotes (the
    /// configuration's outer-header policy applies as over IPv4, less DF).
    pub fn over_ipv6(mut self, local: Ipv6Addr) -> Encapsulator {
        self.local6 = Some(local);
        self.templates.clear();
        self.templates6.clear();
        self
    }

    /// The largest outer packet it writes: the underlay MTU.
    pub fn max_outer(&self) -> usize {
        self.max_outer
    }

    /// Gives network `vni` its own outer header settings (of the same tunnel kind; the settings
    /// of a network never named here are those given to [`Encapsulator::new`]). Settings equal
    /// to another network's share its templates. Ignored past 65535 distinct settings.
    pub fn with_network(mut self, vni: Vni, cfg: TunnelConfig) -> Encapsulator {
        self.set_network(vni, cfg);
        self
    }

    /// [`Encapsulator::with_network`] on a running encapsulator (a network added by a reload);
    /// the header templates are made again as remotes are next seen.
    pub fn set_network(&mut self, vni: Vni, cfg: TunnelConfig) {
        let i = match self.cfgs.iter().position(|c| *c == cfg) {
            Some(i) => i,
            None => {
                self.cfgs.push(cfg);
                self.cfgs.len() - 1
            }
        };
        match u16::try_from(i) {
            Ok(0) => {
                self.by_vni.remove(&vni);
            }
            Ok(i) => {
                self.by_vni.insert(vni, i);
            }
            Err(_) => {}
        }
        self.templates.clear();
        self.templates6.clear();
    }

    /// Which of `cfgs` network `vni` uses.
    #[inline]
    fn index(&self, vni: Vni) -> u16 {
        if self.by_vni.is_empty() {
            0
        } else {
            self.by_vni.get(&vni).copied().unwrap_or(0)
        }
    }

    /// The outer header settings of network `vni`.
    pub fn config(&self, vni: Vni) -> &TunnelConfig {
        &self.cfgs[usize::from(self.index(vni))]
    }

    /// The path MTUs it follows.
    pub fn path_mtus(&self) -> &Arc<PathMtus> {
        &self.pmtu
    }

    /// The longest packet (as [`Encapsulator::encapsulate`] takes it: an Ethernet frame for
    /// VXLAN, an IPv4 packet for IPIP) of network `vni` whose encapsulation fits the path
    /// toward `dst`.
    pub fn max_inner(&mut self, vni: Vni, dst: Remote) -> usize {
        let dst = dst.ip();
        self.refresh();
        let i = self.index(vni);
        let cached = match dst {
            IpAddr::V4(d) => self.templates.get(&(i, d)).map(|r| r.max_outer),
            IpAddr::V6(d) => self.templates6.get(&(i, d)).map(|r| r.max_outer),
        };
        let outer = cached.unwrap_or_else(|| usize::from(self.pmtu.get(dst)).min(self.max_outer));
        outer.saturating_sub(self.overhead())
    }

    /// Re-reads every cached remote's path MTU when the shared table changed.
    #[inline]
    fn refresh(&mut self) {
        let g = self.pmtu.generation();
        if g != self.generation {
            self.reread_path_mtus(g);
        }
    }

    /// [`Encapsulator::refresh`]'s work, out of line: it runs once per change of the table.
    #[cold]
    #[inline(never)]
    fn reread_path_mtus(&mut self, g: u64) {
        self.generation = g;
        let max = self.max_outer;
        for ((_, dst), r) in self.templates.iter_mut() {
            r.max_outer = usize::from(self.pmtu.get((*dst).into())).min(max);
        }
        for ((_, dst), r) in self.templates6.iter_mut() {
            r.max_outer = usize::from(self.pmtu.get((*dst).into())).min(max);
        }
    }

    /// The outer IP ID the next IPIP packet gets.
    pub fn next_id(&self) -> u16 {
        self.next_id
    }

    /// Bytes the outer headers take in front of a packet.
    pub fn overhead(&self) -> usize {
        match self.cfgs[0] {
            TunnelConfig::Vxlan(_) if self.local6.is_some() => encap::tunnel::vxlan6::OVERHEAD,
            TunnelConfig::Vxlan(_) => encap::tunnel::vxlan::OVERHEAD,
            TunnelConfig::Ipip(_) => encap::tunnel::ipip::OVERHEAD,
        }
    }

    /// Writes the outer headers for `dst` in front of the packet at `buf[off..off + len]` (an
    /// Ethernet frame for VXLAN, with `vni`; an IPv4 packet for IPIP) and returns the range of
    /// the finished packet, or why it cannot be sent (`TooBig`: longer than the underlay MTU).
    /// In line where it is called, as it was before IPv6: the IPv6 path is a call.
    #[inline]
    pub fn encapsulate(
        &mut self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        vni: Vni,
        dst: Remote,
    ) -> Result<Range<usize>, DropReason> {
        match dst.ip() {
            IpAddr::V4(d) => self.encapsulate4(buf, off, len, vni, d),
            IpAddr::V6(d) => self.encapsulate6(buf, off, len, vni, d),
        }
    }

    /// [`Encapsulator::encapsulate`] toward an IPv4 remote.
    #[inline]
    fn encapsulate4(
        &mut self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        vni: Vni,
        dst: Ipv4Addr,
    ) -> Result<Range<usize>, DropReason> {
        let overhead = match self.cfgs[0] {
            TunnelConfig::Vxlan(_) => encap::tunnel::vxlan::OVERHEAD,
            TunnelConfig::Ipip(_) => encap::tunnel::ipip::OVERHEAD,
        };
        if len.saturating_add(overhead) > self.max_outer {
            return Err(DropReason::TooBig);
        }
        self.refresh();
        let i = self.index(vni);
        let (cfg, pmtu, max) = (&self.cfgs[usize::from(i)], &self.pmtu, self.max_outer);
        let over_ipv6 = self.local6.is_some();
        let r = template(&mut self.templates, (i, dst), || {
            Cached::new(cfg, over_ipv6, dst, pmtu, max)
        })?;
        if len.saturating_add(overhead) > r.max_outer {
            return Err(DropReason::TooBig);
        }
        let r = match &mut r.template {
            Template::Vxlan(enc) => enc.encapsulate(buf, off, len, &VxlanTx::new(vni)),
            Template::Ipip(enc) => {
                self.next_id = self.next_id.wrapping_add(1);
                enc.encapsulate(buf, off, len, self.next_id)
            }
        };
        r.map_err(|e| drop_reason(&e))
    }

    /// [`Encapsulator::encapsulate`] toward an IPv6 remote (VXLAN over IPv6), out of line so
    /// that the IPv4 path is the code (and the inlining) it was.
    #[inline(never)]
    fn encapsulate6(
        &mut self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        vni: Vni,
        dst: Ipv6Addr,
    ) -> Result<Range<usize>, DropReason> {
        let Some(local) = self.local6 else {
            return Err(DropReason::EncapError);
        };
        let overhead = encap::tunnel::vxlan6::OVERHEAD;
        if len.saturating_add(overhead) > self.max_outer {
            return Err(DropReason::TooBig);
        }
        self.refresh();
        let i = self.index(vni);
        let (cfg, pmtu, max) = (&self.cfgs[usize::from(i)], &self.pmtu, self.max_outer);
        let r = template(&mut self.templates6, (i, dst), || {
            Cached::new6(cfg, local, dst, pmtu, max)
        })?;
        if len.saturating_add(overhead) > r.max_outer {
            return Err(DropReason::TooBig);
        }
        r.template
            .encapsulate(buf, off, len, &VxlanTx::new(vni))
            .map_err(|e| drop_reason(&e))
    }
}

/// Why a packet the codec refused to encapsulate is dropped.
pub fn drop_reason(e: &Error) -> DropReason {
    match *e {
        Error::Invalid {
            reason: Invalid::TooLong,
            ..
        } => DropReason::TooBig,
        Error::Invalid {
            reason: Invalid::TtlZero,
            ..
        } => DropReason::TtlZero,
        Error::Invalid {
            reason: Invalid::OwnSource,
            ..
        } => DropReason::OwnSource,
        Error::Truncated {
            layer: Layer::InnerEthernet,
            ..
        } => DropReason::LocalRunt,
        Error::Truncated {
            layer: Layer::InnerIpv4,
            ..
        }
        | Error::Invalid {
            layer: Layer::InnerIpv4,
            ..
        } => DropReason::BadIpHeader,
        // No room for the headers, settings that make no template: never expected.
        _ => DropReason::EncapError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    /// Loopback's MTU: no limit below the largest IPv4 packet.
    const JUMBO: u32 = 65_536;

    fn ipv4(len: usize, ttl: u8, src: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0u8; 20 + len];
        encap::ipv4::Ipv4Repr {
            src,
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: 17,
            tos: 0,
            ident: 1,
            dont_frag: true,
            ttl,
            payload_len: len - 20,
        }
        .emit(&mut p[20..])
        .unwrap();
        p
    }

    #[test]
    fn vxlan_over_ipv6_writes_its_56_bytes_within_the_path() {
        let local: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let remote = Remote::v6("2001:db8::2".parse().unwrap());
        let cfg = TunnelConfig::Vxlan(VxlanConfig::new(Ipv4Addr::UNSPECIFIED));
        let mut vx = Encapsulator::new(cfg, 0, 1500).over_ipv6(local);
        assert_eq!(vx.overhead(), 56);
        assert_eq!(vx.max_inner(Vni::ZERO, remote), 1444);
        let mut f = vec![0u8; 56 + 1444];
        f[56 + 12] = 0x88;
        let vni = Vni::new(7).unwrap();
        assert_eq!(vx.encapsulate(&mut f, 56, 1444, vni, remote), Ok(0..1500));
        assert_eq!((f[0] >> 4, f[6]), (6, 17), "IPv6, next header UDP");
        assert_eq!(&f[8..24], &local.octets());
        assert_eq!(f[48..56], [0x08, 0, 0, 0, 0, 0, 7, 0]);
        let mut g = vec![0u8; 56 + 1445];
        assert_eq!(
            vx.encapsulate(&mut g, 56, 1445, vni, remote),
            Err(DropReason::TooBig)
        );
        // An IPv4 remote is no remote of an IPv6 underlay.
        assert_eq!(
            vx.encapsulate(&mut f, 56, 60, vni, REMOTE.into()),
            Err(DropReason::EncapError)
        );
    }

    #[test]
    fn each_tunnel_writes_its_headers_and_ipip_counts_ids() {
        let mut vx = Encapsulator::new(TunnelConfig::Vxlan(VxlanConfig::new(LOCAL)), 0, JUMBO);
        assert_eq!(vx.overhead(), 36);
        let mut f = vec![0u8; 36 + 60];
        f[36 + 12] = 0x88;
        let r = vx.encapsulate(&mut f, 36, 60, Vni::new(7).unwrap(), REMOTE.into());
        assert_eq!(r, Ok(0..96));
        let rx = encap::tunnel::vxlan::decapsulate(&f, 4789).unwrap();
        assert_eq!((rx.src, rx.dst, rx.vni.get()), (LOCAL, REMOTE, 7));

        let mut ip = Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(LOCAL)), 100, JUMBO);
        assert_eq!(ip.overhead(), 20);
        for id in [101u16, 102] {
            let mut p = ipv4(60, 9, Ipv4Addr::new(10, 0, 0, 1));
            assert_eq!(
                ip.encapsulate(&mut p, 20, 60, Vni::ZERO, REMOTE.into()),
                Ok(0..80)
            );
            let rx = encap::tunnel::ipip::decapsulate(&p).unwrap();
            assert_eq!((rx.src, rx.dst), (LOCAL, REMOTE));
            assert_eq!(u16::from_be_bytes([p[4], p[5]]), id);
        }
    }

    #[test]
    fn refusals_carry_their_reason() {
        let mut vx = Encapsulator::new(TunnelConfig::Vxlan(VxlanConfig::new(LOCAL)), 0, JUMBO);
        let mut f = vec![0u8; 36 + 10];
        assert_eq!(
            vx.encapsulate(&mut f, 36, 10, Vni::ZERO, REMOTE.into()),
            Err(DropReason::LocalRunt)
        );
        assert_eq!(
            vx.encapsulate(&mut f, 10, 14, Vni::ZERO, REMOTE.into()),
            Err(DropReason::EncapError),
            "no headroom"
        );
        let mut big = vec![0u8; 36 + 65_500];
        assert_eq!(
            vx.encapsulate(&mut big, 36, 65_500, Vni::ZERO, REMOTE.into()),
            Err(DropReason::TooBig)
        );
        let mut ip = Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(LOCAL)), 0, JUMBO);
        let mut p = ipv4(60, 0, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            ip.encapsulate(&mut p, 20, 60, Vni::ZERO, REMOTE.into()),
            Err(DropReason::TtlZero)
        );
        let mut p = ipv4(60, 9, LOCAL);
        assert_eq!(
            ip.encapsulate(&mut p, 20, 60, Vni::ZERO, REMOTE.into()),
            Err(DropReason::OwnSource)
        );
        let mut p = vec![0x45u8; 20 + 10];
        assert_eq!(
            ip.encapsulate(&mut p, 20, 10, Vni::ZERO, REMOTE.into()),
            Err(DropReason::BadIpHeader)
        );
    }

    /// An outer packet longer than the underlay MTU is `TooBig`, in both tunnels, and one that
    /// fills the MTU exactly is sent.
    #[test]
    fn the_underlay_mtu_bounds_the_outer_packet() {
        let mut vx = Encapsulator::new(TunnelConfig::Vxlan(VxlanConfig::new(LOCAL)), 0, 1500);
        assert_eq!(vx.max_outer(), 1500);
        let mut f = vec![0u8; 36 + 1465];
        f[36 + 12] = 0x88;
        assert_eq!(
            vx.encapsulate(&mut f, 36, 1465, Vni::ZERO, REMOTE.into()),
            Err(DropReason::TooBig),
            "1465 + 36 > 1500"
        );
        assert_eq!(
            vx.encapsulate(&mut f, 36, 1464, Vni::ZERO, REMOTE.into()),
            Ok(0..1500)
        );
        let mut ip = Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(LOCAL)), 0, 1400);
        let mut p = ipv4(1381, 9, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            ip.encapsulate(&mut p, 20, 1381, Vni::ZERO, REMOTE.into()),
            Err(DropReason::TooBig)
        );
        let mut p = ipv4(1380, 9, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            ip.encapsulate(&mut p, 20, 1380, Vni::ZERO, REMOTE.into()),
            Ok(0..1400)
        );
        // A jumbo underlay: bounded by the largest IPv4 packet only.
        assert_eq!(
            Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(LOCAL)), 0, 65_536).max_outer(),
            65_535
        );
    }

    /// Each network's policy is its own; networks with equal settings share one.
    #[test]
    fn networks_keep_their_own_outer_policy() {
        let base = VxlanConfig::new(LOCAL);
        let other = VxlanConfig {
            ttl: encap::Ttl::Fixed(9),
            df: encap::Df::Unset,
            ..base
        };
        let (a, b, c) = (
            Vni::new(1).unwrap(),
            Vni::new(2).unwrap(),
            Vni::new(3).unwrap(),
        );
        let mut vx = Encapsulator::new(TunnelConfig::Vxlan(base), 0, JUMBO)
            .with_network(b, TunnelConfig::Vxlan(other))
            .with_network(c, TunnelConfig::Vxlan(base));
        assert_eq!(vx.cfgs.len(), 2);
        assert_eq!(vx.config(a), &TunnelConfig::Vxlan(base));
        assert_eq!(vx.config(b), &TunnelConfig::Vxlan(other));
        for (vni, ttl, df) in [(a, 64, 0x40), (b, 9, 0), (c, 64, 0x40), (a, 64, 0x40)] {
            let mut f = vec![0u8; 36 + 60];
            f[36 + 12] = 0x88;
            assert_eq!(
                vx.encapsulate(&mut f, 36, 60, vni, REMOTE.into()),
                Ok(0..96)
            );
            assert_eq!((f[8], f[6] & 0x40), (ttl, df), "{vni:?}");
            assert!(encap::tunnel::vxlan::decapsulate(&f, 4789).is_ok());
        }
    }

    /// A path MTU learned toward one remote bounds its packets (and only its), from the next
    /// packet on, in a worker whose template was cached before; it goes when the value ages.
    #[test]
    fn each_remote_follows_its_learned_path_mtu() {
        use crate::core::Timestamp;
        let pmtu = Arc::new(PathMtus::new(1500));
        let cfg = TunnelConfig::Vxlan(VxlanConfig::new(LOCAL));
        let mut vx = Encapsulator::with_path_mtus(cfg, 0, Arc::clone(&pmtu));
        let other = Ipv4Addr::new(192, 0, 2, 3);
        let mut f = vec![0u8; 36 + 1464];
        f[36 + 12] = 0x88;
        assert!(
            vx.encapsulate(&mut f, 36, 1464, Vni::ZERO, REMOTE.into())
                .is_ok()
        );
        assert_eq!(vx.max_inner(Vni::ZERO, REMOTE.into()), 1464);
        pmtu.learn(Timestamp(0), REMOTE.into(), 1400);
        assert_eq!(
            vx.encapsulate(&mut f, 36, 1464, Vni::ZERO, REMOTE.into()),
            Err(DropReason::TooBig)
        );
        assert_eq!(vx.max_inner(Vni::ZERO, REMOTE.into()), 1364);
        assert_eq!(
            vx.encapsulate(&mut f, 36, 1364, Vni::ZERO, REMOTE.into()),
            Ok(0..1400)
        );
        assert!(
            vx.encapsulate(&mut f, 36, 1464, Vni::ZERO, other.into())
                .is_ok()
        );
        pmtu.expire(Timestamp(0) + crate::core::pmtu::PMTU_EXPIRES);
        assert!(
            vx.encapsulate(&mut f, 36, 1464, Vni::ZERO, REMOTE.into())
                .is_ok()
        );
    }

    #[test]
    fn the_template_cache_is_bounded() {
        let mut vx = Encapsulator::new(TunnelConfig::Vxlan(VxlanConfig::new(LOCAL)), 0, JUMBO);
        let mut f = vec![0u8; 36 + 60];
        for i in 0..(MAX_TEMPLATES as u32 + 10) {
            let dst = Ipv4Addr::from(0x0a00_0000 + i);
            assert!(
                vx.encapsulate(&mut f, 36, 60, Vni::ZERO, dst.into())
                    .is_ok()
            );
            assert!(vx.templates.len() <= MAX_TEMPLATES);
        }
    }
}
