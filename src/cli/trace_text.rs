//! The text of `vtepd trace`: one block per packet, one line per step.

use crate::control::protocol::TraceRow;
use crate::core::trace::{
    Flood, Headers, LearnResult, Origin, Outcome, ReplyKind, Step, WorkerStage,
};
use std::fmt::Write;

fn flood(k: Flood) -> &'static str {
    match k {
        Flood::Broadcast => "broadcast",
        Flood::UnknownUnicast => "unknown unicast",
        Flood::Multicast => "multicast",
    }
}

fn proto(p: u8) -> String {
    match p {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmp6".to_owned(),
        n => format!("proto {n}"),
    }
}

/// The name of an ICMPv6 Neighbor Discovery message (with a leading space), or nothing.
fn nd(h: &Headers) -> &'static str {
    match (h.proto, h.icmp_type) {
        (Some(58), Some(133)) => " router solicitation",
        (Some(58), Some(134)) => " router advertisement",
        (Some(58), Some(135)) => " neighbour solicitation",
        (Some(58), Some(136)) => " neighbour advertisement",
        (Some(58), Some(137)) => " redirect",
        _ => "",
    }
}

fn headers(h: &Headers) -> String {
    let mut s = String::new();
    if let Some(v) = h.vni {
        let _ = write!(s, "vxlan vni {v}, ");
    }
    if let (Some(src), Some(dst)) = (h.src_mac, h.dst_mac) {
        let _ = write!(s, "{src} > {dst}, ");
    }
    match (h.arp_op, h.src_ip, h.dst_ip) {
        (Some(1), Some(src), Some(dst)) => {
            let _ = write!(s, "ARP who-has {dst} tell {src}, ");
        }
        (Some(2), Some(src), _) => {
            let _ = write!(
                s,
                "ARP reply {src} is-at {}, ",
                h.src_mac.map_or(String::new(), |m| m.to_string())
            );
        }
        (_, Some(src), Some(dst)) => {
            let p = h.proto.map_or(String::new(), |p| format!(" {}", proto(p)));
            let _ = write!(s, "{src} > {dst}{p}{}, ", nd(h));
        }
        _ => {
            if let Some(t) = h.ethertype {
                let _ = write!(s, "ethertype 0x{t:04x}, ");
            }
        }
    }
    let _ = write!(s, "{} bytes", h.len);
    s
}

fn learn(r: &LearnResult) -> String {
    match r {
        LearnResult::Learned => "learned".to_owned(),
        LearnResult::Refreshed => "refreshed".to_owned(),
        LearnResult::Moved { from } => format!("moved from {from}"),
        LearnResult::Froze { at } => format!("frozen at {at} (moved too often)"),
        LearnResult::Frozen { at } => format!("frozen at {at}: not moved"),
        LearnResult::RefusedCap => "refused: the network's learned-entry cap is reached".to_owned(),
        LearnResult::StaticConflict { pinned } => {
            format!("refused: a static entry pins it to {pinned}")
        }
        LearnResult::StaticKept => "static entry, kept".to_owned(),
        LearnResult::Off => "learning is off".to_owned(),
    }
}

/// One step as a line (without indentation).
pub fn step(s: &Step, simulated: bool) -> String {
    let would = if simulated { "would be " } else { "" };
    match s {
        Step::Vni { vni, found: true } => format!("vni {vni}: network found"),
        Step::Vni { vni, found: false } => format!("vni {vni}: no such network"),
        Step::Peer {
            src,
            accepted,
            any_peer,
        } => match (accepted, any_peer) {
            (true, false) => format!("peer check {src}: known remote"),
            (true, true) => format!("peer check {src}: accepted (--allow-any-peer)"),
            (false, _) => format!("peer check {src}: not a known remote"),
        },
        Step::Learn {
            mac,
            remote,
            result,
            ..
        } => format!("learn {mac} behind {remote}: {would}{}", learn(result)),
        Step::Ecn { outer, kept: true } => {
            format!("ecn: outer {outer:#04b} combined with the inner")
        }
        Step::Ecn { kept: false, .. } => "ecn: outer CE over inner Not-ECT".to_owned(),
        Step::Fdb { vni, mac, remote } => match remote {
            Some(r) => format!("fdb lookup {mac} vni {vni}: remote {r}"),
            None => format!("fdb lookup {mac} vni {vni}: not found"),
        },
        Step::Storm { kind, allowed } => format!(
            "storm control ({}): {}",
            flood(*kind),
            match (simulated, allowed) {
                (true, _) => "not applied in a simulation",
                (false, true) => "within the limit",
                (false, false) => "over the limit",
            }
        ),
        Step::Flood { kind, peers: 1 } => format!("flood ({}): 1 peer", flood(*kind)),
        Step::Flood { kind, peers } => format!("flood ({}): {peers} peers", flood(*kind)),
        Step::ArpSuppress { target, answer } => match answer {
            Some(m) => format!("arp suppression: {target} is at {m}: answered here"),
            None => format!("arp suppression: {target} not known"),
        },
        Step::NdSuppress { target, answer } => match answer {
            Some(m) => format!("nd suppression: {target} is at {m}: answered here"),
            None => format!("nd suppression: {target} not known"),
        },
        Step::NeighLearn { ip, mac, result } => {
            format!("neighbour {ip} at {mac}: {would}{}", snake(result))
        }
        Step::Route { dst, via } => match via {
            Some(v) => format!("route lookup {dst}: via {v}"),
            None => format!("route lookup {dst}: no route"),
        },
        Step::Neigh { hop, mac } => match mac {
            Some(m) => format!("neighbour lookup {hop}: {m}"),
            None => format!("neighbour lookup {hop}: unresolved"),
        },
        Step::Hold { hop, arp_request } => {
            let ask = if hop.is_ipv6() {
                "a neighbour solicitation"
            } else {
                "an ARP request"
            };
            let how = match (arp_request, simulated) {
                (true, false) => format!("{ask} sent"),
                (true, true) => format!("{ask} would be sent"),
                (false, _) => "already asked for, pending".to_owned(),
            };
            format!("{would}held until {hop} resolves ({how})")
        }
        Step::Reply {
            kind: ReplyKind::Arp,
        } => "answered: ARP reply".to_owned(),
        Step::Reply {
            kind: ReplyKind::Echo,
        } => "answered: ICMP echo reply".to_owned(),
        Step::Reply {
            kind: ReplyKind::Nd,
        } => "answered: neighbour advertisement".to_owned(),
        Step::TooBig { len, mtu } => format!("{len} bytes: more than the tunnel MTU {mtu}"),
        Step::Worker { stage, remote } => match (stage, remote) {
            (WorkerStage::Send, Some(r)) => format!("lost by the worker: send to {r} refused"),
            (WorkerStage::Send, None) => "lost by the worker: send refused".to_owned(),
            (WorkerStage::Receive, _) => "lost by the worker on receive".to_owned(),
            (WorkerStage::DeviceRead, _) => "lost by the worker reading the device".to_owned(),
        },
    }
}

/// A serde enum's JSON name (`mac_changed`), as words.
fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

fn outcome(o: &Outcome, dev: &str) -> String {
    match o {
        Outcome::Tunnel {
            vni,
            remotes,
            copies,
        } => {
            let list: Vec<String> = remotes.iter().map(ToString::to_string).collect();
            let more = (*copies as usize).saturating_sub(list.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let vni = if *vni > 0 {
                format!(" (vni {vni})")
            } else {
                String::new()
            };
            match copies {
                1 => format!("tunnelled to {}{vni}", list.join("")),
                n => format!("flooded to {n} remotes: {}{more}{vni}", list.join(", ")),
            }
        }
        Outcome::Answered => format!("answered into {dev}"),
        Outcome::Held => "held for neighbour resolution".to_owned(),
        Outcome::Deliver { vni } => format!("delivered to {dev} (vni {vni})"),
        Outcome::Consumed => "consumed: answered into the tunnel".to_owned(),
        Outcome::Drop { reason } => format!("dropped: {reason}"),
    }
}

/// The block of packet `n`.
pub fn block(row: &TraceRow, n: u64) -> String {
    let r = &row.record;
    let dev = row.dev.as_deref().unwrap_or("the device");
    let mut s = String::new();
    let kind = if r.simulated {
        "simulated packet"
    } else {
        "packet"
    };
    let from = match r.origin {
        Origin::Device { .. } => format!("from device {dev}"),
        Origin::Tunnel {
            src,
            src_port,
            dst_port,
            tos,
        } => {
            let from = src_port
                .filter(|p| *p != 0)
                .map_or(String::new(), |p| format!(":{p}"));
            let to = dst_port.map_or(String::new(), |p| format!(" to port {p}"));
            format!("from tunnel {src}{from}{to} tos {tos:#04x}")
        }
    };
    let worker = r.worker.map_or_else(
        || "nothing sent or changed".to_owned(),
        |w| format!("worker {w}"),
    );
    let at = format!("{}.{:03}s", r.at_ms / 1000, r.at_ms % 1000);
    let _ = writeln!(s, "{kind} {n} {from}, {worker}, at {at}");
    let _ = writeln!(s, "  {}", headers(&r.headers));
    for st in &r.steps {
        let _ = writeln!(s, "  - {}", step(st, r.simulated));
    }
    if r.steps_lost > 0 {
        let _ = writeln!(s, "  - ({} more steps not kept)", r.steps_lost);
    }
    let would = if r.simulated { "would be " } else { "" };
    let _ = writeln!(s, "  = {would}{}", outcome(&r.outcome, dev));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::trace::{Mac, Record, Recorder, Trace};
    use encap::MacAddr;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn a_block_names_the_origin_the_steps_and_the_outcome() {
        let mut rec = Recorder::<false>::default();
        rec.step(Step::Vni {
            vni: 42,
            found: true,
        });
        rec.step(Step::Learn {
            mac: Mac(MacAddr([2, 0, 0, 0, 0, 1])),
            remote: Ipv4Addr::new(192, 0, 2, 2).into(),
            result: LearnResult::StaticConflict {
                pinned: Ipv4Addr::new(192, 0, 2, 3).into(),
            },
            simulated: false,
        });
        let record = Record {
            worker: Some(1),
            ..Record::new(
                Origin::Tunnel {
                    src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    src_port: Some(50123),
                    dst_port: Some(4789),
                    tos: 0,
                },
                Headers::default(),
                &rec,
                Outcome::Drop {
                    reason: crate::core::DropReason::StaticConflict,
                },
            )
        };
        let text = block(
            &TraceRow {
                record,
                dev: Some("vx42".to_owned()),
            },
            7,
        );
        assert!(
            text.starts_with("packet 7 from tunnel 192.0.2.2:50123 to port 4789"),
            "{text}"
        );
        assert!(text.contains("worker 1"), "{text}");
        assert!(
            text.contains("refused: a static entry pins it to 192.0.2.3"),
            "{text}"
        );
        assert!(text.contains("= dropped: static_conflict"), "{text}");
    }

    /// ND in words: the message a header carries, a solicitation sent (or that would be) for a
    /// held packet's next hop, and one already pending.
    #[test]
    fn nd_steps_and_headers_are_named() {
        let hop: IpAddr = "fd00::77".parse().unwrap();
        let asked = Step::Hold {
            hop,
            arp_request: true,
        };
        assert_eq!(
            step(&asked, true),
            "would be held until fd00::77 resolves (a neighbour solicitation would be sent)"
        );
        assert_eq!(
            step(&asked, false),
            "held until fd00::77 resolves (a neighbour solicitation sent)"
        );
        let pending = Step::Hold {
            hop: Ipv4Addr::new(10, 0, 0, 7).into(),
            arp_request: false,
        };
        assert_eq!(
            step(&pending, false),
            "held until 10.0.0.7 resolves (already asked for, pending)"
        );
        let h = Headers {
            len: 86,
            src_ip: Some("fd00::5".parse().unwrap()),
            dst_ip: Some("ff02::1:ff00:77".parse().unwrap()),
            proto: Some(58),
            icmp_type: Some(135),
            ..Headers::default()
        };
        assert_eq!(
            headers(&h),
            "fd00::5 > ff02::1:ff00:77 icmp6 neighbour solicitation, 86 bytes"
        );
    }
}
