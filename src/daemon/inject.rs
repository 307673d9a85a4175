//! `vtepd trace --inject`: a synthetic packet run through the daemon's engine as a
//! simulation, on the control thread that asked, like OVS's `ofproto/trace`.
//!
//! It runs here rather than on a worker because the engines are shared (`Arc`) and a
//! simulation changes no state: it needs nothing of a worker's (a scratch [`Out`] and
//! [`Counters`] stand in for the worker's, and are thrown away), it never waits for a busy
//! worker, and it cannot disturb one. What a worker does after the engine's decision
//! (encapsulation, the path MTU check, the send) is not simulated.

use crate::control::protocol::{Inject, InjectFrom};
use crate::core::ipip::Ipip;
use crate::core::l2::L2;
use crate::core::l3vx::L3Vx;
use crate::core::synth::{self, Synth};
use crate::core::trace::{Headers, Origin, Outcome, Record, Recorder};
use crate::core::{Counters, NetId, Out, Outer, Timestamp};
use encap::MacAddr;
use encap::ethernet::HEADER_LEN as ETH;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The daemon's engine, for simulations.
#[derive(Debug, Clone)]
pub enum Injector {
    /// L2 VXLAN.
    L2(Arc<L2>),
    /// L3 VXLAN.
    L3Vx(Arc<L3Vx>),
    /// L3 IPIP.
    Ipip(Arc<Ipip>),
}

/// Destination MAC of a synthetic L2 frame when none is given (a unicast MAC the FDB is not
/// likely to hold: it is flooded as unknown unicast).
const DEFAULT_DST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

/// Decodes hex (whitespace and `:` between bytes allowed). Written here: a dozen lines, and no
/// crate of the dependency tree does it.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err("the hex bytes have an odd number of digits".to_owned());
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair = std::str::from_utf8(p).unwrap_or("");
            u8::from_str_radix(pair, 16).map_err(|_| format!("'{pair}' is not a hex byte"))
        })
        .collect()
}

impl Injector {
    /// Simulates `req` at `now` in network `net` (its VNI `vni`; the L3 modes have one, the
    /// caller resolved it). An error is the request's fault: one line saying why.
    pub fn run(
        &self,
        now: Timestamp,
        req: &Inject,
        net: NetId,
        vni: u32,
    ) -> Result<Record, String> {
        let given = req.hex.as_deref().map(parse_hex).transpose()?;
        let f = &req.fields;
        let mut ctr = Counters::default();
        let mut out = Out::with_capacity(64);
        let mut rec = Recorder::<true>::default();
        // The network's own UDP port: the datagram arrives where the network listens.
        let port = match self {
            Injector::L2(e) => e.core().port_of(net),
            Injector::L3Vx(e) => e.core().port_of(e.net()),
            Injector::Ipip(_) => None,
        }
        .unwrap_or(0);
        let outer = || -> Result<Outer, String> {
            let src = req.outer_src.ok_or(
                "a packet from the tunnel needs its outer source (--outer-src IP)".to_owned(),
            )?;
            Ok(Outer {
                src: src.into(),
                tos: req.tos,
                port,
            })
        };
        let tunnel_origin = |o: Outer| Origin::Tunnel {
            src: o.src.ip(),
            src_port: None,
            dst_port: (o.port != 0).then_some(o.port),
            tos: o.tos,
        };
        let bytes = |build: &dyn Fn(&Synth) -> Result<Vec<u8>, String>| match &given {
            Some(b) => Ok(b.clone()),
            None => build(f),
        };
        let (origin, headers, outcome) = match (self, req.from) {
            (Injector::L2(e), InjectFrom::Device) => {
                let frame = bytes(&|f| f.frame(DEFAULT_DST_MAC))?;
                let v = e.on_local_traced(now, net, &frame, &mut out, &mut ctr, &mut rec);
                (
                    Origin::Device { vni },
                    Headers::of_frame(&frame),
                    Outcome::from_device(v, &out.remotes),
                )
            }
            (Injector::L2(e), InjectFrom::Tunnel) => {
                let o = outer()?;
                let mut d = bytes(&|f| Ok(synth::vxlan(vni, &f.frame(DEFAULT_DST_MAC)?)))?;
                let h = Headers::of_vxlan(&d);
                let v = e.on_remote_traced(now, o, &mut d, &mut ctr, &mut rec);
                (
                    tunnel_origin(o),
                    h,
                    Outcome::from_tunnel(&v, h.vni.unwrap_or(0)),
                )
            }
            (Injector::L3Vx(e), InjectFrom::Device) => {
                let mut frame = vec![0u8; ETH];
                frame.extend_from_slice(&bytes(&Synth::ip_packet)?);
                let h = Headers::of_ip(&frame[ETH..]);
                let v = e.on_local_traced(now, &mut frame, &mut out, &mut ctr, &mut rec);
                (
                    Origin::Device { vni },
                    h,
                    Outcome::from_device(v, &out.remotes),
                )
            }
            (Injector::L3Vx(e), InjectFrom::Tunnel) => {
                let o = outer()?;
                let own = e.own_mac();
                let mut d = bytes(&|f| Ok(synth::vxlan(vni, &f.frame(own)?)))?;
                let h = Headers::of_vxlan(&d);
                let v = e.on_remote_traced(now, o, &mut d, &mut out, &mut ctr, &mut rec);
                (
                    tunnel_origin(o),
                    h,
                    Outcome::from_tunnel(&v, h.vni.unwrap_or(0)),
                )
            }
            (Injector::Ipip(e), InjectFrom::Device) => {
                let p = bytes(&Synth::ip_packet)?;
                let v = e.on_local_traced(now, &p, &mut out, &mut ctr, &mut rec);
                (
                    Origin::Device { vni: 0 },
                    Headers::of_ip(&p),
                    Outcome::from_device(v, &out.remotes),
                )
            }
            (Injector::Ipip(e), InjectFrom::Tunnel) => {
                let o = outer()?;
                let local: Ipv4Addr = e.local();
                let IpAddr::V4(src) = o.src.ip() else {
                    return Err(
                        "IPIP runs over IPv4: --outer-src must be an IPv4 address".to_owned()
                    );
                };
                let mut p = bytes(&|f| Ok(synth::ipip(src, local, &f.ip_packet()?)))?;
                let h = Headers::of_ipip(&p);
                let v = e.on_remote_traced(now, o, &mut p, &mut ctr, &mut rec);
                (tunnel_origin(o), h, Outcome::from_tunnel(&v, 0))
            }
        };
        Ok(Record {
            at_ms: now.millis(),
            ..Record::new(origin, headers, &rec, outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_read_with_or_without_separators_and_bad_hex_says_why() {
        assert_eq!(parse_hex("0a:ff 01").unwrap(), [0x0a, 0xff, 0x01]);
        assert!(parse_hex("abc").unwrap_err().contains("odd"));
        assert!(parse_hex("zz").unwrap_err().contains("'zz'"));
    }
}
