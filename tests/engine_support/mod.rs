//! The engines the in-memory tests drive, built one way: a core with one network (VNI 42) at
//! the underlay address [`LOCAL`], the L3 VXLAN engine on it, and the IPIP engine. Include it
//! with `mod engine_support;`.

#![allow(dead_code)]

use encap::{MacAddr, Vni};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vtepd::core::ipip::{Ipip, IpipSettings};
use vtepd::core::l3vx::{L3Vx, L3VxConfig};
use vtepd::core::route::{Route, Routes};
use vtepd::core::{Core, CoreConfig, NetId, NetworkConfig};

/// Our underlay address.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The one network's VNI.
pub fn vni() -> Vni {
    Vni::new(42).unwrap()
}

/// A core with one network, VNI 42, its device's MAC `own`, flooding to `peers`.
pub fn core(own: MacAddr, peers: Vec<Ipv4Addr>) -> Arc<Core> {
    core_with(NetworkConfig {
        vni: vni(),
        peers: peers.into_iter().map(Into::into).collect(),
        own_mac: own,
        ..Default::default()
    })
}

/// A core at [`LOCAL`] with the one network `net`, decapsulating from known remotes only.
pub fn core_with(net: NetworkConfig) -> Arc<Core> {
    let cfg = CoreConfig {
        local: LOCAL.into(),
        allow_any_peer: false,
        networks: vec![net],
    };
    Arc::new(Core::new(cfg).unwrap())
}

/// The L3 VXLAN engine on `core`'s network: MAC `own`, overlay address `address`/24, the
/// overlay `routes`.
pub fn l3vx(core: &Arc<Core>, own: MacAddr, address: Ipv4Addr, routes: &[Route]) -> L3Vx {
    l3vx_with(core, L3VxConfig::new(own, address, 24), routes)
}

/// [`l3vx`] dual-stack: IPv6 overlay address `address6`/64 too (the routes may be IPv6).
pub fn l3vx6(
    core: &Arc<Core>,
    own: MacAddr,
    address: Ipv4Addr,
    address6: Ipv6Addr,
    routes: &[Route],
) -> L3Vx {
    let cfg = L3VxConfig::new(own, address, 24).with_address6(address6, 64);
    l3vx_with(core, cfg, routes)
}

fn l3vx_with(core: &Arc<Core>, cfg: L3VxConfig, routes: &[Route]) -> L3Vx {
    let ipv6 = cfg.address6.is_some();
    let routes = Routes::with_overlay_routes(LOCAL, ipv6, routes).unwrap();
    L3Vx::new(Arc::clone(core), NetId(0), cfg, Arc::new(routes))
}

/// The IPIP engine at [`LOCAL`] with `routes` and a tunnel MTU of 1480, from known peers only.
pub fn ipip(routes: &[Route]) -> Ipip {
    ipip_with(routes, false)
}

/// [`ipip`] carrying IPv6 too (protocol 41; the routes may be IPv6).
pub fn ipip6(routes: &[Route]) -> Ipip {
    ipip_with(routes, true)
}

fn ipip_with(routes: &[Route], ipv6: bool) -> Ipip {
    let routes = Routes::with_routes(LOCAL, ipv6, routes).unwrap();
    let settings = IpipSettings {
        local: LOCAL,
        allow_any_peer: false,
        tunnel_mtu: 1480,
        ipv6,
    };
    Ipip::new(&settings, Arc::new(routes))
}
