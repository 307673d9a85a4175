//! `vtepd run`: the daemon. [`runner`] is its one lifecycle (checks, start-up order, threads,
//! signals, exit status, teardown) and [`event_loop`] the one loop every dataplane worker runs;
//! each mode is a module that supplies only what differs: how it opens its devices and sockets,
//! its per-worker [`event_loop::Dataplane`], and what it gives the control plane
//! ([`l2_vxlan`], [`l3_vxlan`], [`l3_ipip`]).
//!
//! A dataplane works on its device queue and socket through two small traits ([`io`]), so the
//! same worker runs on real ones and, in tests, on in-memory ones ([`io::mem`]).
//!
//! Shared by the modes' dataplanes: batched socket I/O ([`batch`]), device receive and
//! transmit offloads ([`batch_gro`], [`batch_tso`], [`l3_offload`]), the VXLAN send side
//! ([`tunnel_tx`]), device ports ([`dev_port`]), and the control plane's view of the state
//! ([`handler`], [`stats`]), the metrics listener ([`metrics`]), and the sessions a client arms in
//! the workers ([`session`], for [`trace`]).

pub mod batch;
pub mod batch_gro;
pub mod batch_tso;
pub mod capture;
pub mod capture_control;
pub mod dev_port;
pub mod device;
pub mod event_loop;
pub mod handler;
pub mod housekeeping;
pub mod in_use;
pub mod inject;
pub mod io;
pub mod ipip_group;
pub mod l2_vxlan;
pub mod l3_ipip;
pub mod l3_offload;
pub mod l3_vxlan;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod pmtu;
#[cfg(test)]
mod private_netns;
pub mod ratelimit;
pub mod receive;
pub mod reload;
pub mod runner;
pub mod session;
pub mod signals;
pub mod socket;
pub mod stats;
pub mod store;
pub mod trace;
pub mod trace_control;
pub mod tun;
pub mod tun_ipv6;
pub mod tunnel_tx;

use crate::config::{ConfigSource, DaemonConfig, NetConfig, Outer, Tunnel};
use crate::core::Core;
use crate::error::Failure;
use stats::Clock;
use std::net::IpAddr;

/// Runs the daemon until a signal (Ok) or a fatal error; `source` is where `cfg` was read
/// from (`None`: from flags), read again by a reload.
pub fn run(cfg: &DaemonConfig, source: Option<ConfigSource>) -> Result<(), Failure> {
    match cfg.tunnel {
        Tunnel::L2Vxlan => runner::run::<l2_vxlan::L2Vxlan>(cfg, source),
        Tunnel::L3Vxlan => runner::run::<l3_vxlan::L3Vxlan>(cfg, source),
        Tunnel::L3Ipip => runner::run::<l3_ipip::L3Ipip>(cfg, source),
    }
}

/// A VXLAN worker's send side: a raw socket of its own, and each network's outer-header
/// settings (our address, its VXLAN port, and its policy: by default source ports from the inner
/// flow hash in 49152-65535, TTL 64, DSCP and ECN inherited, DF set, and a zero UDP checksum, as
/// Linux's vxlan device sends by default over IPv4; RFC 7348 §5 allows it and saves a pass over
/// the frame). It follows and feeds the shared path MTUs `pmtu`, reads the ICMP listener
/// `icmp` (one worker's) on the tick, and asks `core` toward which remotes segments leave with
/// remote checksum offload.
fn tunnel_tx(
    cfg: &DaemonConfig,
    core: &std::sync::Arc<Core>,
    pmtu: std::sync::Arc<crate::core::pmtu::PathMtus>,
    icmp: Option<pmtu::IcmpListener>,
) -> Result<tunnel_tx::TunnelTx, Failure> {
    let settings = |n: &NetConfig| n.outer.vxlan(cfg.local, cfg.port_of(n));
    let first = cfg
        .networks
        .first()
        .map_or_else(|| Outer::default().vxlan(cfg.local, cfg.port), settings);
    let raw = socket::open_raw_sender(cfg.local)?;
    let mut tx = tunnel_tx::TunnelTx::with_path_mtus(raw, first, pmtu, icmp)
        .with_core(std::sync::Arc::clone(core));
    if let IpAddr::V6(l) = cfg.local {
        tx = tx.over_ipv6(l);
    }
    for n in cfg.networks.iter().skip(1) {
        tx = tx.with_network(n.vni, settings(n));
    }
    Ok(tx)
}

/// Installs the configuration's static FDB entries and neighbours into `core`.
fn install_static(core: &Core, cfg: &DaemonConfig, clock: Clock) -> Result<(), Failure> {
    for n in &cfg.networks {
        for e in &n.fdb {
            core.fdb_add(clock.now(), n.vni, e.mac, e.remote)
                .map_err(|err| Failure::Usage(format!("static entry {}: {err}", e.mac)))?;
        }
        for e in &n.neigh {
            core.neigh_add(clock.now(), n.vni, e.ip, e.mac)
                .map_err(|err| Failure::Usage(format!("neighbour {}: {err}", e.ip)))?;
        }
    }
    Ok(())
}
