//! `vtepd trace`: arms a trace session in the daemon, polls it every 100 ms and prints each
//! record as it arrives, until --count records came, Ctrl-C, or the daemon ends the session;
//! or (`--inject`) one simulation.

use super::trace_text;
use super::{ControlArg, Failure};
use crate::config::parse_vni;
use crate::control::client::{call, call_typed};
use crate::control::protocol::{Inject, InjectFrom, Request, TracePolled, TraceRow, TraceStarted};
use crate::core::synth::Synth;
use crate::core::trace::{Filter, Mac, Proto};
use clap::{Args, ValueEnum};
use encap::{MacAddr, Vni};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the client asks for records.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// `vtepd trace` flags.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// How many packets to trace.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=100_000), conflicts_with = "inject")]
    pub count: u64,
    /// Only this network (--inject: the network the packet is in).
    #[arg(long, value_name = "N", value_parser = parse_vni)]
    pub vni: Option<Vni>,
    /// Only frames with this Ethernet source or destination.
    #[arg(long, value_name = "MAC", value_parser = parse_mac, conflicts_with = "inject")]
    pub mac: Option<MacAddr>,
    /// Only packets with this inner IPv4 or IPv6 (or ARP) source or destination.
    #[arg(long, value_name = "IP", conflicts_with = "inject")]
    pub ip: Option<IpAddr>,
    /// Only packets from this remote (tunnel side) or sent to it (device side).
    #[arg(long, value_name = "IP", conflicts_with = "inject")]
    pub outer_ip: Option<IpAddr>,
    /// Only this protocol: icmp, icmp6, tcp, udp, arp, nd (IPv6 Neighbor Discovery) or an IP
    /// protocol number (--inject: the packet's protocol, an ICMP or ICMPv6 echo request by
    /// default; arp: an ARP request, nd: a neighbour solicitation).
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    pub proto: Option<Proto>,
    /// Only packets that were dropped (by the engine, or by a worker around it: cut short on
    /// receive, an offload it cannot carry out, a send the kernel refused).
    #[arg(long, conflicts_with = "inject")]
    pub drops: bool,
    /// Filter terms joined by commas: mac=MAC, ip=IP, outer-ip=IP, vni=N, proto=PROTO, drops.
    #[arg(long, value_name = "EXPR", value_parser = parse_filter, conflicts_with = "inject")]
    pub filter: Option<Filter>,
    /// Print one JSON object per packet, one per line.
    #[arg(long)]
    pub json: bool,
    /// Run one synthetic packet through the engine instead: a simulation (nothing is sent,
    /// nothing learned, no counter changes), from --hex or built from the fields below.
    #[arg(long)]
    pub inject: bool,
    /// --inject: where the packet comes from.
    #[arg(long, value_enum, default_value_t = Side::Device, requires = "inject")]
    pub from: Side,
    /// --inject --from tunnel: the outer source (the remote VTEP or node).
    #[arg(long, value_name = "IP", requires = "inject")]
    pub outer_src: Option<IpAddr>,
    /// --inject: the packet as the engine takes it, in hex: the frame (L2) or IP packet (L3)
    /// from the device; the VXLAN datagram (UDP payload) or IPIP packet from the tunnel.
    #[arg(long, value_name = "HEX", requires = "inject",
          conflicts_with_all = ["src_mac", "dst_mac", "src_ip", "dst_ip"])]
    pub hex: Option<String>,
    /// --inject: the Ethernet source (default 02:00:00:00:00:01).
    #[arg(long, value_name = "MAC", value_parser = parse_mac, requires = "inject")]
    pub src_mac: Option<MacAddr>,
    /// --inject: the Ethernet destination (default 02:00:00:00:00:02; ARP: broadcast; ND: the
    /// target's solicited-node group; L3 VXLAN from the tunnel: vtepd's MAC).
    #[arg(long, value_name = "MAC", value_parser = parse_mac, requires = "inject")]
    pub dst_mac: Option<MacAddr>,
    /// --inject: the IPv4 or IPv6 source, the ARP sender or the ND asker (default 10.0.0.1;
    /// fd00::1 for IPv6: an IPv6 address given, icmp6 or nd).
    #[arg(long, value_name = "IP", requires = "inject")]
    pub src_ip: Option<IpAddr>,
    /// --inject: the IPv4 or IPv6 destination, or the address ARP or ND asks for (default
    /// 10.0.0.2; fd00::2 for IPv6).
    #[arg(long, value_name = "IP", requires = "inject")]
    pub dst_ip: Option<IpAddr>,
    #[command(flatten)]
    pub ctl: ControlArg,
}

/// Where an injected packet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Side {
    /// Read from the device.
    Device,
    /// Received from the underlay.
    Tunnel,
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a MAC address"))
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    s.trim().parse()
}

pub(super) fn parse_filter(s: &str) -> Result<Filter, String> {
    s.parse()
}

impl TraceArgs {
    /// The filter of the flags and --filter together (a term given both ways is refused).
    pub fn filter(&self) -> Result<Filter, Failure> {
        let flags = Filter {
            mac: self.mac.map(Mac),
            ip: self.ip,
            outer_ip: self.outer_ip,
            vni: self.vni.map(Vni::get),
            proto: self.proto,
            drops: self.drops,
        };
        self.filter
            .unwrap_or_default()
            .and(flags)
            .map_err(Failure::Usage)
    }

    fn inject(&self) -> Inject {
        Inject {
            from: match self.from {
                Side::Device => InjectFrom::Device,
                Side::Tunnel => InjectFrom::Tunnel,
            },
            vni: self.vni.map(Vni::get),
            outer_src: self.outer_src,
            tos: 0,
            hex: self.hex.clone(),
            fields: Synth {
                src_mac: self.src_mac.map(Mac),
                dst_mac: self.dst_mac.map(Mac),
                src_ip: self.src_ip,
                dst_ip: self.dst_ip,
                proto: self.proto,
            },
        }
    }
}

/// Prints one record; a closed pipe ends the trace quietly.
fn print(out: &mut impl Write, row: &TraceRow, n: u64, json: bool) -> Result<bool, Failure> {
    let written = if json {
        serde_json::to_writer(&mut *out, row)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
    } else {
        out.write_all(trace_text::block(row, n).as_bytes())
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Runtime(format!("cannot write to stdout: {e}"))),
    }
}

/// `vtepd trace ...`
pub fn run(a: &TraceArgs) -> Result<(), Failure> {
    let path = &a.ctl.control;
    let mut out = std::io::stdout().lock();
    if a.inject {
        let req = a.inject();
        if req.hex.is_none() {
            req.fields.check().map_err(Failure::Usage)?;
        }
        let row: TraceRow = call_typed(path, &Request::TraceInject(req))?;
        print(&mut out, &row, 1, a.json)?;
        return Ok(());
    }
    let filter = a.filter()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;
    }
    let started: TraceStarted = call_typed(
        path,
        &Request::TraceStart {
            filter,
            count: a.count,
        },
    )?;
    let session = started.session;
    let (mut shown, mut lost) = (0u64, 0u64);
    let result = loop {
        std::thread::sleep(POLL_EVERY);
        let interrupted = stop.load(Ordering::Relaxed);
        let polled: TracePolled = match call_typed(path, &Request::TracePoll { session }) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let mut open = true;
        for row in &polled.records {
            shown += 1;
            open = open && print(&mut out, row, shown, a.json)?;
        }
        if polled.overflow > lost {
            eprintln!(
                "vtepd: {} records lost: the trace queue was full (the client read too slowly)",
                polled.overflow - lost
            );
            lost = polled.overflow;
        }
        if polled.done || interrupted || !open {
            break Ok(());
        }
    };
    // The session ends anyway within 5 s without polls; stopping it frees the workers now.
    let _ = call(path, &Request::TraceStop { session });
    if !a.json {
        eprintln!("vtepd: {shown} packets traced, {lost} records lost");
    }
    result
}
