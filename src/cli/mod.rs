//! Command line: `vtepd run ...` and the client subcommands (the CLI in README.md), and the mapping of
//! every failure to one line on stderr and an exit status (0 ok, 2 usage, 1 runtime).

use crate::config::{
    self, DaemonConfig, Encap, Ipv4Cidr, Ipv6Cidr, LogFormat, Mode, NetConfig, parse_ageing,
    parse_control_path, parse_dev_name, parse_inline_table, parse_max_fdb, parse_metrics_addr,
    parse_mtu, parse_neigh, parse_port, parse_remote_ip, parse_route, parse_threads,
    parse_unicast_mac, parse_vni, parse_vtep_ip,
};
use crate::core::route::{Route, parse_prefix};
pub use crate::error::Failure;

mod capture;
mod client;
mod docs;
mod pcapng;
mod trace;
mod trace_text;
use clap::{Args, Parser, Subcommand};
use encap::{MacAddr, Vni};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Userspace VXLAN/IPIP tunnel endpoint (VTEP) with flood-and-learn forwarding.
///
/// `vtepd run` owns a TAP device per network and bridges it over VXLAN (UDP) to remote VTEPs
/// (`--mode l2`, the default), or a TUN device whose packets it routes to remote nodes over IPIP
/// (`--mode l3 --encap ipip`, RFC 2003) or over VXLAN as an L2 endpoint with its own MAC and ARP
/// (`--mode l3 --encap vxlan`). The other subcommands talk to a running daemon through its control
/// socket (`--control PATH`).
#[derive(Debug, Parser)]
#[command(name = "vtepd", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (one network from flags, or several from --config FILE).
    Run(Box<RunArgs>),
    /// Show or change the forwarding database (MAC -> remote VTEP).
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Show or change the flood lists (remote VTEPs that get BUM traffic).
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Show or change the L3 routes (overlay prefix -> next hop).
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Show the daemon's counters: packets and bytes per network and per peer, drops by reason.
    ///
    /// Like `ip -s link`: the counters of the daemon's mode only, zeros left out (`--all` shows
    /// them), bytes in binary units (B, KiB, MiB, GiB: powers of 1024).
    Stats(StatsArgs),
    /// Show or change the neighbour bindings (overlay IP -> MAC; L3 VXLAN, ARP/ND suppression).
    #[command(subcommand)]
    Neigh(NeighCommand),
    /// Apply the daemon's changed configuration file without a restart (as SIGHUP does).
    ///
    /// Reads the file given to `vtepd run --config` again (with the --control and --log-format
    /// given there) and applies the difference; prints what changed, one line each, or
    /// `no change`.
    #[command(after_help = RELOAD_HELP)]
    Reload(ControlArg),
    /// Show the running configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Trace packets through the running daemon: each decision it takes, step by step.
    ///
    /// Arms tracing on every worker for the next --count packets the filter takes and prints
    /// each as it completes: where it came from, its headers, every step the engine took (VNI
    /// lookup, peer check, learning, FDB/route/neighbour lookups, ARP suppression, flooding)
    /// and the outcome (the remotes, the device, or the drop reason). Ctrl-C stops it. With
    /// --inject, a synthetic packet is run through the engine instead, as a simulation:
    /// nothing is sent and no state changes.
    #[command(after_help = TRACE_HELP)]
    Trace(trace::TraceArgs),
    /// Capture packets as the running daemon sees them, into a pcapng file.
    ///
    /// Records the device's frames or packets (--side overlay), the outer packets as sent and
    /// as received (--side underlay), or both, on every worker, including the packets vtepd
    /// dropped (with the reason in the packet's comment), until --count packets or --max-bytes
    /// were captured or Ctrl-C. The daemon hands the packets over the control socket; this
    /// command writes the file (`-w -`: stdout, for `tshark -r -` or `wireshark -k -i -`).
    #[command(after_help = CAPTURE_HELP)]
    Capture(capture::CaptureArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(docs::CompletionsArgs),
    /// Print the manual page vtepd(1) in roff to stdout, or write every page to a directory.
    Man(docs::ManArgs),
}

/// What `vtepd reload --help` says after the options.
const RELOAD_HELP: &str = "Applied while running: networks added and removed (L2: their TAP \
devices created and removed), and for the networks that stay: peers, static FDB entries, static \
neighbours, routes, learning, ageing, max_fdb, arp_suppress, mac_move, storm, allow_any_peer \
(VXLAN). Learned FDB entries and neighbours, path MTUs and counters are kept.\n\
Refused, nothing changed (restart vtepd instead): local, port, mode, encap, threads, busy_poll, control, \
log_format, store, store_prefix, store_ttl, networks added or removed in L3 mode, a network \
renamed, a network's address, mtu, announce, advertise or outer-header policy (ttl, tos, df, \
srcport, udp_csum, remcsum_tx, remcsum_rx), and an invalid file.\n\
The file is the truth: peers, entries, neighbours and routes added through the control socket \
and not in the file are removed (save them first with `vtepd config show > FILE`).\n\
Exit status: 0 applied (or no change), 2 refused, 1 failed while applying.";

/// What `vtepd capture --help` says after the options.
const CAPTURE_HELP: &str = "The file is pcapng with one interface per side: `overlay` (Ethernet \
in L2 VXLAN, raw IPv4 in the L3 modes) and `underlay` (raw IPv4: the whole outer packet, IPv4 + \
UDP + VXLAN or IPv4 + IPIP). Each packet's flags say in or out, its comment the worker, a drop \
reason and notes. A received VXLAN datagram's outer IPv4 and UDP headers are rebuilt from what \
the socket reported (addresses, ports, TOS; TTL 64, ID and checksums 0). TSO super-frames read \
from the device are written as read (flagged in the comment); the underlay shows the segments \
that cross the wire. A reader slower than the traffic loses packets from the capture, never \
from forwarding; the summary on stderr says how many.\n\
Examples:\n  vtepd capture -w /tmp/vx.pcapng --count 100\n  \
vtepd capture --side underlay --drops -w - | tshark -r -\n  \
vtepd capture --filter proto=icmp,vni=42 -w - | tshark -r - -d udp.port==8472,vxlan";

/// What `vtepd trace --help` says after the options.
const TRACE_HELP: &str = "Filter terms (flags, or --filter EXPR: the same terms joined by \
commas, like mac=02:00:00:00:00:01,proto=icmp,drops) must all hold. A trace costs the workers \
nothing while no session is armed; armed, only the packets the filter may take pay. Records \
cross from the workers through a bounded queue: when the client reads too slowly, records \
(never packets) are lost, and the count is shown. A session the client stops polling (killed) \
ends within 5 s.\n\
Examples:\n  vtepd trace --count 10 --proto icmp\n  vtepd trace --drops --json\n  \
vtepd trace --inject --dst-mac 02:00:00:00:00:09\n  \
vtepd trace --inject --from tunnel --outer-src 192.0.2.2 --src-mac 02:00:00:00:00:09\n  \
vtepd trace --inject --dst-ip fd00:45::2\n  \
vtepd trace --inject --proto nd --dst-ip fd00::9";

/// `vtepd config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the running configuration as a TOML file `vtepd run --config` accepts, with the
    /// changes made through the control socket since the last (re)load (like `wg showconf`).
    Show(ControlArg),
}

/// `vtepd run` flags.
#[derive(Debug, Args)]
#[command(
    override_usage = "vtepd run --dev <NAME> --local <IP> [OPTIONS]\n       \
vtepd run --config <FILE> [--control <PATH>] [--metrics <ADDR:PORT>] [--log-format <text|json>]",
    after_help = "Exit status: 0 after SIGINT/SIGTERM, 2 for a bad configuration \
(nothing is created), 1 for a runtime failure (for example the device was removed).\n\
Signals: SIGINT and SIGTERM shut down cleanly; SIGHUP reloads the --config file as \
`vtepd reload` does (a daemon started from flags logs that it has no file); SIGUSR1 and \
SIGUSR2 are logged and ignored; SIGPIPE is ignored.\n\
Under systemd (Type=notify) vtepd tells READY=1 once its control socket, devices and workers \
are up, RELOADING=1 then READY=1 around a reload, and STOPPING=1 when it shuts down.\n\
Log level: RUST_LOG (default info; an invalid filter is refused with status 2), written to \
stderr."
)]
pub struct RunArgs {
    /// Read the networks from a TOML file instead of the flags below
    /// (keys: local, port, allow_any_peer, mode, encap, threads, busy_poll, control, metrics, log_format,
    /// store, store_prefix, store_ttl,
    /// and [[network]] tables with dev, vni, peers, address, address6, mtu, learning, ageing, max_fdb,
    /// fdb = [{mac, remote}], routes = ["CIDR=IP", ...], advertise = ["CIDR", ...], announce,
    /// neigh = [{ip, mac}], arp_suppress,
    /// mac_move = {moves, window, hold}, storm = {broadcast, unknown_unicast, multicast}, ttl,
    /// tos, df, srcport, udp_csum, remcsum_tx, remcsum_rx).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "dev", "local", "vni", "peers", "port", "address", "address6", "mtu", "no_learning", "ageing",
        "max_fdb", "allow_any_peer", "threads", "busy_poll", "mode", "encap", "routes", "advertise", "announce", "neigh",
        "arp_suppress", "mac_move", "storm", "outer", "store_opts",
    ])]
    pub config: Option<PathBuf>,

    /// TAP (l2) or TUN (l3) device to create (or attach to); removed on exit if vtepd created it.
    #[arg(long, value_name = "NAME", value_parser = parse_dev_name,
          required_unless_present = "config")]
    pub dev: Option<String>,

    /// Our underlay address, IPv4 or IPv6 (every remote of the same family); must be an address
    /// of this host. The UDP sockets bind to it.
    #[arg(long, value_name = "IP", value_parser = parse_vtep_ip,
          required_unless_present = "config")]
    pub local: Option<IpAddr>,

    /// VXLAN network identifier, 0..=16777215 [default: 1].
    #[arg(long, value_name = "N", value_parser = parse_vni)]
    pub vni: Option<Vni>,

    /// Remote VTEP that gets a copy of every broadcast, multicast and unknown-unicast frame
    /// (head-end replication); repeat for several.
    #[arg(long = "peer", value_name = "IP", value_parser = parse_remote_ip)]
    pub peers: Vec<IpAddr>,

    /// Device mode: l2 (a TAP device carrying Ethernet frames) or l3 (a TUN device carrying IP
    /// packets, sent by --route) [default: l2].
    #[arg(long, value_name = "l2|l3", value_parser = |s: &str| s.parse::<Mode>())]
    pub mode: Option<Mode>,

    /// Encapsulation: vxlan (UDP), or ipip (IP protocol 4, RFC 2003; needs --mode l3)
    /// [default: vxlan].
    #[arg(long, value_name = "vxlan|ipip", value_parser = |s: &str| s.parse::<Encap>())]
    pub encap: Option<Encap>,

    /// VXLAN UDP port, used as destination and bound locally, like ip-link's `dstport`
    /// [default: 4789]. In a --config file each [[network]] may have a `port` of its own.
    #[arg(long, value_name = "N", value_parser = parse_port)]
    pub port: Option<u16>,

    /// IPv4 address and prefix to put on the device, like 10.0.0.1/24.
    #[arg(long, value_name = "CIDR")]
    pub address: Option<Ipv4Cidr>,

    /// --mode l3: IPv6 address and prefix to put on the device, like fd00:1::1/64. The device
    /// then carries IPv6 and takes IPv6 routes: --encap vxlan resolves IPv6 next hops by
    /// Neighbor Discovery (and answers it for this address), --encap ipip sends IPv6 in IPv4
    /// (protocol 41, as Linux's sit). Without it the device has IPv6 turned off.
    #[arg(long, value_name = "CIDR")]
    pub address6: Option<Ipv6Cidr>,

    /// Device MTU [default: MTU of the underlay interface holding --local, minus the
    /// encapsulation overhead: 50 for VXLAN, 20 for IPIP]. A larger MTU is accepted with a
    /// warning. In every mode a packet that does not fit the path toward its remote (the
    /// underlay MTU, or a lower path MTU learned from the underlay's ICMP errors) is answered
    /// with an ICMP "fragmentation needed" (IPv4 with DF) or "packet too big" (IPv6, L2)
    /// carrying the MTU that fits; IPv4 without DF is cut into fragments (VXLAN) or dropped
    /// (IPIP; counted too_big).
    #[arg(long, value_name = "N", value_parser = parse_mtu)]
    pub mtu: Option<u16>,

    /// L3 mode: send packets to the overlay prefix CIDR through the tunnel to next hop IP
    /// (longest prefix wins; repeat for several). With --encap ipip, IP is the remote node's
    /// underlay address; with --encap vxlan, IP is an overlay next hop whose MAC the neighbour
    /// table resolves (ARP; Neighbor Discovery for IPv6 prefixes, which need --address6).
    /// vtepd installs the matching kernel route `CIDR dev <device>` itself and
    /// removes it on exit.
    #[arg(long = "route", value_name = "CIDR=IP", value_parser = parse_route)]
    pub routes: Vec<Route>,

    /// L3 modes with --store: an overlay prefix behind this host (its pod block), registered in
    /// the store so that the other hosts route it here; IPv4, or IPv6 with --address6;
    /// repeatable.
    #[arg(long, value_name = "CIDR", value_parser = crate::core::route::parse_prefix)]
    pub advertise: Vec<ipnet::IpNet>,

    /// L2 with --store: announce the MACs seen on the TAP device through the store, so the
    /// other hosts install them before any traffic (no flooding to find them); each withdrawn
    /// when it ages out.
    #[arg(long)]
    pub announce: bool,

    /// Static neighbour binding: overlay IP -> MAC (L3 VXLAN next hops, like flannel's
    /// `ip neigh ... nud permanent`, IPv6 ones with --address6; L2 with --arp-suppress:
    /// answered on behalf, IPv4 or IPv6); repeatable.
    #[arg(long = "neigh", value_name = "IP=MAC", value_parser = parse_neigh)]
    pub neigh: Vec<config::StaticNeigh>,

    /// L2: answer local ARP requests and IPv6 neighbour solicitations (ND suppression) for
    /// remote addresses learned from ARP and ND crossing the tunnel (or `neigh add`) directly
    /// into the TAP device instead of flooding them to every peer.
    #[arg(long)]
    pub arp_suppress: bool,

    /// Do not learn remote MACs from received traffic (use static entries and flooding).
    #[arg(long)]
    pub no_learning: bool,

    /// Seconds a learned FDB entry lives without being seen [default: 300].
    #[arg(long, value_name = "SECS", value_parser = parse_ageing)]
    pub ageing: Option<u64>,

    /// Cap on learned FDB entries per network [default: 65536].
    #[arg(long, value_name = "N", value_parser = parse_max_fdb)]
    pub max_fdb: Option<usize>,

    /// MAC-move dampening: a MAC that moves between remotes more than MOVES times in WINDOW
    /// seconds is frozen on its last remote for HOLD seconds (shown in `fdb show`; `fdb del`
    /// ends it early); moves=0 turns it off [default: moves=5,window=180,hold=180].
    #[arg(long, value_name = "moves=N,window=SECS,hold=SECS",
          value_parser = parse_inline_table::<config::MoveLimit>)]
    pub mac_move: Option<config::MoveLimit>,

    /// L2 storm control: frames per second flooded from the device, per kind (keys broadcast,
    /// unknown_unicast, multicast; a kind left out is unlimited); frames over the limit are
    /// dropped and counted (storm_broadcast, ...) [default: no limit].
    #[arg(long, value_name = "KIND=PPS,...", value_parser = parse_inline_table::<config::StormLimits>)]
    pub storm: Option<config::StormLimits>,

    /// Outer-header policy: --ttl, --tos, --df, --srcport, --udp-csum.
    #[command(flatten)]
    pub outer: config::Outer,

    /// Accept tunnel traffic from any source, not only known remotes (peers and FDB remotes;
    /// route next hops in L3 mode). An IPIP endpoint open to anyone lets any host inject packets
    /// (CVE-2020-10136): leave this off unless the underlay is filtered.
    #[arg(long)]
    pub allow_any_peer: bool,

    /// Dataplane worker threads, each with its own device queue and socket
    /// [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Workers never sleep: each polls its device queue and socket without waiting, and gives
    /// the CPU up (sched_yield) when a poll finds nothing. Saves the wake-ups of a round trip
    /// (0.4-0.8x the RTT on the lab's VMs) for a busy CPU per worker even when idle, and more
    /// CPU per byte where the workers share their CPUs with the applications: for CPUs set
    /// aside for vtepd (see --threads).
    #[arg(long)]
    pub busy_poll: bool,

    /// The store of a store-driven fabric: --store, --store-prefix, --store-ttl.
    #[command(flatten)]
    pub store: config::StoreOptions,

    /// Control socket path, mode 0600 [default: /run/vtepd/vtepd.sock]; with --config it
    /// overrides the file's `control`.
    #[arg(long, value_name = "PATH", value_parser = parse_control_path)]
    pub control: Option<PathBuf>,

    /// Serve Prometheus metrics (`GET /metrics`, OpenMetrics text) over HTTP on this IP
    /// address and port, like 127.0.0.1:9570 or `[::1]:9570` [default: no metrics listener];
    /// with --config it overrides the file's `metrics`.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_addr)]
    pub metrics: Option<std::net::SocketAddr>,

    /// Log lines as text or as one JSON object per line, on stderr [default: text]; with
    /// --config it overrides the file's `log_format`.
    #[arg(long, value_name = "text|json", value_parser = |s: &str| s.parse::<LogFormat>())]
    pub log_format: Option<LogFormat>,
}

impl RunArgs {
    /// Builds and validates the daemon configuration (pure: reads the config file at most).
    pub fn to_config(&self) -> Result<DaemonConfig, Failure> {
        if self.encap == Some(Encap::Ipip) {
            let vxlan_only = [
                ("--vni", self.vni.is_some()),
                ("--peer", !self.peers.is_empty()),
                ("--port", self.port.is_some()),
                ("--no-learning", self.no_learning),
                ("--ageing", self.ageing.is_some()),
                ("--max-fdb", self.max_fdb.is_some()),
                ("--mac-move", self.mac_move.is_some()),
                ("--storm", self.storm.is_some()),
            ];
            if let Some((flag, _)) = vxlan_only.iter().find(|(_, given)| *given) {
                return Err(Failure::Usage(format!(
                    "{flag} is not used with --encap ipip (it sends by --route)"
                )));
            }
            if let Some((flag, _)) = self.outer.vxlan_only() {
                return Err(Failure::Usage(format!(
                    "{flag} is for VXLAN: IPIP has no UDP header"
                )));
            }
        }
        if let Some(source) = self.source() {
            return Ok(source.load()?);
        }
        let mut cfg = self.flags_config()?;
        if let Some(c) = &self.control {
            cfg.control = c.clone();
        }
        if let Some(m) = self.metrics {
            cfg.metrics = Some(m);
        }
        if let Some(f) = self.log_format {
            cfg.log_format = f;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// With `--config`: the file and the flags that override its keys, read again as they are
    /// by a reload (`None`: the configuration comes from flags).
    pub fn source(&self) -> Option<config::ConfigSource> {
        Some(config::ConfigSource {
            path: self.config.clone()?,
            control: self.control.clone(),
            log_format: self.log_format,
            metrics: self.metrics,
        })
    }

    fn flags_config(&self) -> Result<DaemonConfig, Failure> {
        let missing = |f: &str| Failure::Usage(format!("{f} is required without --config"));
        let dev = self.dev.clone().ok_or_else(|| missing("--dev"))?;
        let local = self.local.ok_or_else(|| missing("--local"))?;
        let vni = match self.vni {
            Some(v) => v,
            None => Vni::new(config::DEFAULT_VNI).map_err(|e| Failure::Usage(e.to_string()))?,
        };
        let mut net = NetConfig::new(dev, vni);
        net.peers = self.peers.clone();
        net.address = self.address;
        net.address6 = self.address6;
        net.mtu = self.mtu;
        net.learning = !self.no_learning;
        net.neigh = self.neigh.clone();
        net.arp_suppress = self.arp_suppress;
        if let Some(a) = self.ageing {
            net.ageing = Duration::from_secs(a);
        }
        if let Some(m) = self.max_fdb {
            net.max_fdb = m;
        }
        net.mac_move = self.mac_move.unwrap_or_default();
        net.storm = self.storm.unwrap_or_default();
        net.outer = self.outer;
        net.routes = self.routes.clone();
        net.advertise = self.advertise.clone();
        net.announce = self.announce;
        Ok(DaemonConfig {
            local,
            port: self.port.unwrap_or(encap::vxlan::DEFAULT_PORT),
            allow_any_peer: self.allow_any_peer,
            tunnel: config::Tunnel::new(self.mode, self.encap)?,
            threads: self.threads.unwrap_or_else(config::default_threads),
            busy_poll: self.busy_poll,
            control: PathBuf::from(config::DEFAULT_CONTROL),
            log_format: LogFormat::default(),
            metrics: None,
            store: self.store.clone(),
            networks: vec![net],
        })
    }
}

/// The `--control PATH` option every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ControlArg {
    /// Control socket of the daemon to talk to.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_CONTROL,
          value_parser = parse_control_path)]
    pub control: PathBuf,
}

/// `vtepd fdb ...`
#[derive(Debug, Subcommand)]
pub enum FdbCommand {
    /// List FDB entries (like `bridge fdb show`).
    Show {
        /// Only this network.
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        /// Print a JSON array of {vni, dev, mac, remote, kind, store, age_secs}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Add (or replace) a static entry: frames to MAC go to remote VTEP IP.
    Add {
        /// Unicast MAC address.
        #[arg(value_parser = parse_unicast_mac)]
        mac: MacAddr,
        /// Remote VTEP.
        #[arg(value_parser = parse_remote_ip)]
        remote: IpAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Delete an entry (learned or static).
    Del {
        /// Unicast MAC address.
        #[arg(value_parser = parse_unicast_mac)]
        mac: MacAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Delete all entries (of every network unless --vni).
    Flush {
        /// Only this network.
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        /// Keep static entries.
        #[arg(long)]
        learned_only: bool,
        #[command(flatten)]
        ctl: ControlArg,
    },
}

/// `vtepd peers ...`
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List every network's flood list.
    Show {
        /// Print a JSON array of {vni, dev, peers}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Add a remote VTEP to a flood list.
    Add {
        /// Remote VTEP.
        #[arg(value_parser = parse_remote_ip)]
        ip: IpAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Remove a remote VTEP from a flood list.
    Del {
        /// Remote VTEP.
        #[arg(value_parser = parse_remote_ip)]
        ip: IpAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
}

/// `vtepd routes ...`
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// List the routes (like `ip route`).
    Show {
        /// Print a JSON array of {prefix, via, dev}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Add (or replace) a route: packets to CIDR go to next hop IP. Takes effect at once, and
    /// vtepd installs the kernel route `CIDR dev <device>` itself.
    Add {
        /// Overlay prefix, like 10.0.1.0/26.
        #[arg(value_name = "CIDR", value_parser = parse_prefix)]
        prefix: IpNet,
        /// Next hop (IPIP: the remote node's underlay address, IPv4 for IPv6 prefixes too;
        /// L3 VXLAN: an overlay next hop).
        #[arg(value_name = "IP", value_parser = parse_next_hop)]
        via: IpAddr,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Delete the route for exactly CIDR (and its kernel route).
    Del {
        /// Overlay prefix.
        #[arg(value_name = "CIDR", value_parser = parse_prefix)]
        prefix: IpNet,
        #[command(flatten)]
        ctl: ControlArg,
    },
}

fn parse_next_hop(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an IP address"))?;
    crate::core::route::check_next_hop(ip).map_err(|e| e.to_string())?;
    Ok(ip)
}

/// `vtepd neigh ...`
#[derive(Debug, Subcommand)]
pub enum NeighCommand {
    /// List neighbour bindings (like `ip neigh show`).
    Show {
        /// Only this network.
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        /// Print a JSON array of {vni, dev, ip, mac, kind, store, age_secs}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Add (or replace) a static binding: IP is at MAC.
    Add {
        /// Overlay address: IPv4, or IPv6 (L2 ND suppression, or L3 VXLAN with --address6).
        #[arg(value_parser = config::parse_neigh_ip)]
        ip: IpAddr,
        /// Unicast MAC address.
        #[arg(value_parser = parse_unicast_mac)]
        mac: MacAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
    /// Delete a binding (learned or static).
    Del {
        /// Overlay address.
        #[arg(value_parser = config::parse_neigh_ip)]
        ip: IpAddr,
        /// Network (may be omitted when the daemon has only one).
        #[arg(long, value_name = "N", value_parser = parse_vni)]
        vni: Option<Vni>,
        #[command(flatten)]
        ctl: ControlArg,
    },
}

/// `vtepd stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one JSON object: every counter, zeros included, per network, per peer and per
    /// worker (the README lists its fields).
    #[arg(long)]
    pub json: bool,
    /// Text: show the counters that are zero too (hidden by default).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub ctl: ControlArg,
}

/// Collapses a clap error to one line (drops the usage block and the `--help` hint).
pub fn one_line_clap_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        if !l.is_empty() {
            parts.push(l.strip_prefix("error: ").unwrap_or(l));
        }
    }
    parts.join(" ")
}

/// Parses the command line and runs it; the process's exit status.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // Help and version go to stdout with status 0.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            eprintln!("vtepd: {}", one_line_clap_error(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => args
            .to_config()
            .and_then(|cfg| crate::daemon::run(&cfg, args.source())),
        Command::Fdb(c) => client::fdb(c),
        Command::Peers(c) => client::peers(c),
        Command::Routes(c) => client::routes(c),
        Command::Stats(a) => client::stats(a),
        Command::Neigh(c) => client::neigh(c),
        Command::Reload(ctl) => client::reload(&ctl),
        Command::Config(ConfigCommand::Show(ctl)) => client::config_show(&ctl),
        Command::Trace(a) => trace::run(&a),
        Command::Capture(a) => capture::run(&a),
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("vtepd: {}", f.message());
            ExitCode::from(f.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vtepd").chain(args.iter().copied()))
    }

    fn run_cfg(args: &[&str]) -> Result<DaemonConfig, Failure> {
        match parse(args)
            .map_err(|e| Failure::Usage(one_line_clap_error(&e)))?
            .command
        {
            Command::Run(r) => r.to_config(),
            c => panic!("not run: {c:?}"),
        }
    }

    #[test]
    fn help_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_build_one_network() {
        let c = run_cfg(&[
            "run",
            "--dev",
            "vtep0",
            "--local",
            "192.0.2.1",
            "--vni",
            "42",
            "--peer",
            "192.0.2.2",
            "--peer",
            "192.0.2.3",
            "--port",
            "8472",
            "--address",
            "10.0.0.1/24",
            "--mtu",
            "1400",
            "--no-learning",
            "--ageing",
            "10",
            "--max-fdb",
            "5",
            "--allow-any-peer",
            "--control",
            "/tmp/v.sock",
            "--mac-move",
            "moves=2,hold=30",
            "--storm",
            "broadcast=500",
            "--busy-poll",
        ])
        .unwrap();
        assert_eq!(c.local, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(c.port, 8472);
        assert!(c.allow_any_peer);
        assert!(c.busy_poll);
        assert_eq!(c.control, PathBuf::from("/tmp/v.sock"));
        let n = &c.networks[0];
        assert_eq!((n.dev.as_str(), n.vni.get()), ("vtep0", 42));
        assert_eq!(n.peers.len(), 2);
        assert_eq!(n.mtu, Some(1400));
        assert!(!n.learning);
        assert_eq!(n.ageing, Duration::from_secs(10));
        assert_eq!(n.max_fdb, 5);
        let moves = (n.mac_move.moves, n.mac_move.window, n.mac_move.hold);
        assert_eq!(moves, (2, 180, 30));
        assert_eq!((n.storm.broadcast, n.storm.multicast), (Some(500), None));
    }

    #[test]
    fn run_flags_build_an_l3_vxlan_network() {
        let c = run_cfg(&[
            "run",
            "--mode",
            "l3",
            "--dev",
            "vtep0",
            "--local",
            "192.0.2.1",
            "--address",
            "10.244.0.0/32",
            "--route",
            "10.244.1.0/24=10.244.1.0",
            "--neigh",
            "10.244.1.0=02:00:00:00:00:01",
        ])
        .unwrap();
        assert_eq!(c.tunnel, config::Tunnel::L3Vxlan);
        let n = &c.networks[0];
        assert_eq!(n.routes[0].via, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(n.neigh[0].mac.to_string(), "02:00:00:00:00:01");
        assert!(!n.arp_suppress);
    }

    #[test]
    fn run_defaults() {
        let c = run_cfg(&["run", "--dev", "v0", "--local", "192.0.2.1"]).unwrap();
        assert_eq!(c.port, 4789);
        assert_eq!(c.networks[0].vni.get(), 1);
        assert_eq!(c.control, PathBuf::from(config::DEFAULT_CONTROL));
        assert_eq!(c.networks[0].ageing, Duration::from_secs(300));
        assert!(c.networks[0].learning);
        assert_eq!(c.threads, config::default_threads());
    }

    #[test]
    fn run_rejects_bad_flags_with_one_line() {
        let base = ["run", "--dev", "v0", "--local", "192.0.2.1"];
        let cases: &[(&[&str], &str)] = &[
            (&["--vni", "16777216"], "out of range"),
            (&["--vni", "abc"], "VNI"),
            (&["--port", "0"], "port"),
            (&["--port", "65536"], "port"),
            (&["--peer", "1.2.3"], "IPv4"),
            (&["--peer", "192.0.2.1"], "own"),
            (&["--peer", "192.0.2.2", "--peer", "192.0.2.2"], "twice"),
            (&["--address", "10.0.0.1/40"], "prefix"),
            (&["--mtu", "10"], "MTU"),
            (&["--mode", "l3"], "needs --address"),
            (
                &[
                    "--mode",
                    "l3",
                    "--address",
                    "10.244.0.0/32",
                    "--arp-suppress",
                ],
                "for --mode l2",
            ),
            (&["--mode", "l4"], "expected"),
            (&["--encap", "ipip"], "needs --mode l3"),
            (&["--encap", "gre"], "expected vxlan or ipip"),
            (&["--route", "10.0.0.0/24=192.0.2.2"], "need --mode l3"),
            (&["--metrics", "127.0.0.1"], "is not IP:PORT"),
            (&["--metrics", "localhost:9000"], "is not IP:PORT"),
            (&["--threads", "0"], "thread count"),
            (&["--threads", "65"], "thread count"),
            (&["--bogus"], "unexpected argument"),
            (&["--neigh", "10.0.0.1"], "IP=MAC"),
            (&["--neigh", "10.0.0.1=ff:ff:ff:ff:ff:ff"], "unicast"),
            (&["--neigh", "10.0.0.256=02:00:00:00:00:01"], "IPv4"),
            (
                &[
                    "--arp-suppress",
                    "--neigh",
                    "10.0.0.1=02:00:00:00:00:01",
                    "--neigh",
                    "10.0.0.1=02:00:00:00:00:02",
                ],
                "twice",
            ),
            (&["--config", "/x.toml"], "cannot be used"),
            (&["--store", "http://192.0.2.9:2379"], "is not etcd="),
            (&["--store", "etcd=https://192.0.2.9:2379"], "TLS"),
            (&["--store-ttl", "5"], "needs --store"),
            (&["--store-prefix", "/a/"], "empty segment"),
            (&["--announce"], "needs --store"),
            (&["--remcsum-tx", "auto"], "remcsum_tx auto needs --store"),
            (&["--remcsum-tx", "yes"], "expected on or off (or auto)"),
            (
                &["--remcsum-tx", "on", "--udp-csum", "off"],
                "needs the outer UDP checksum",
            ),
            (&["--advertise", "10.1.0.0/24"], "for --mode l3"),
            (&["--advertise", "10.1.0.1/24"], "host bits"),
        ];
        for (extra, want) in cases {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            let e = run_cfg(&args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.message().contains(want), "{args:?}: {e:?} lacks {want:?}");
            assert!(!e.message().contains('\n'), "{args:?}: {e:?}");
        }
        let e = run_cfg(&["run", "--dev", "v0"]).unwrap_err();
        assert!(e.message().contains("--local"), "{e:?}");
        let e = run_cfg(&[
            "run",
            "--dev",
            "a-name-that-is-too-long",
            "--local",
            "192.0.2.1",
        ]);
        assert!(e.unwrap_err().message().contains("longer"));
    }

    #[test]
    fn ipip_flags_are_checked() {
        let base = [
            "run",
            "--dev",
            "tun0",
            "--local",
            "192.0.2.1",
            "--mode",
            "l3",
        ];
        let base: Vec<&str> = base.iter().copied().chain(["--encap", "ipip"]).collect();
        // Every mode runs one worker per CPU unless told otherwise.
        let mut ok = base.clone();
        ok.extend_from_slice(&["--route", "10.0.1.0/26=192.0.2.2"]);
        assert_eq!(run_cfg(&ok).unwrap().threads, config::default_threads());
        let cases: &[(&[&str], &str)] = &[
            (&["--route", "10.0.1.0/26"], "CIDR=IP"),
            (&["--route", "10.0.1.0/33=192.0.2.2"], "prefix"),
            (&["--route", "10.0.1.1/26=192.0.2.2"], "host bits"),
            (&["--route", "10.0.1.0/26=224.0.0.5"], "unicast"),
            (&["--route", "10.0.1.0/26=255.255.255.255"], "unicast"),
            (&["--route", "10.0.1.0/26=0.0.0.0"], "unicast"),
            (&["--route", "0.0.0.0/0=192.0.2.2"], "default"),
            (&["--route", "10.0.1.0/26=192.0.2.1"], "own --local"),
            (
                &["--route", "192.0.2.0/24=198.51.100.2"],
                "covers 192.0.2.1",
            ),
            (
                &[
                    "--route",
                    "10.0.1.0/26=192.0.2.2",
                    "--route",
                    "10.0.1.0/26=192.0.2.3",
                ],
                "twice",
            ),
            (&["--vni", "5"], "--vni is not used with --encap ipip"),
            (&["--peer", "192.0.2.2"], "--peer is not used"),
            (&["--port", "4789"], "--port is not used"),
            (&["--ageing", "5"], "--ageing is not used"),
        ];
        for (extra, want) in cases {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            let e = run_cfg(&args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.message().contains(want), "{args:?}: {e:?} lacks {want:?}");
            assert!(!e.message().contains('\n'), "{args:?}: {e:?}");
        }
        let e = run_cfg(&[
            "run",
            "--dev",
            "t",
            "--local",
            "192.0.2.1",
            "--encap",
            "ipip",
        ]);
        assert!(e.unwrap_err().message().contains("needs --mode l3"));
    }

    /// `--advertise` takes an IPv6 prefix where the device has an IPv6 address (`--address6`)
    /// to route it by, and refuses it without one.
    #[test]
    fn advertise_takes_ipv6_prefixes_with_address6() {
        let base: Vec<&str> = "run --dev tun0 --local 192.0.2.1 --mode l3 --encap ipip \
            --store etcd=http://192.0.2.9:2379 --advertise 10.1.0.0/24 --advertise fd00:1::/64"
            .split_whitespace()
            .collect();
        let e = run_cfg(&base).unwrap_err();
        assert!(
            e.message().contains("advertise fd00:1::/64") && e.message().contains("--address6"),
            "{e:?}"
        );
        let mut ok = base.clone();
        ok.extend_from_slice(&["--address6", "fd00:1::1/128"]);
        let cfg = run_cfg(&ok).unwrap();
        let want: Vec<ipnet::IpNet> = vec![
            "10.1.0.0/24".parse().unwrap(),
            "fd00:1::/64".parse().unwrap(),
        ];
        assert_eq!(cfg.networks[0].advertise, want);
    }

    #[test]
    fn config_file_allows_control_override() {
        let dir = std::env::temp_dir().join(format!("vtepd-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 7\n",
        )
        .unwrap();
        let p = f.to_str().unwrap();
        let c = run_cfg(&["run", "--config", p, "--control", "/tmp/o.sock"]).unwrap();
        assert_eq!(c.control, PathBuf::from("/tmp/o.sock"));
        assert_eq!(c.networks[0].vni.get(), 7);
        let e = run_cfg(&["run", "--config", "/nonexistent/x.toml"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message().contains("cannot read config"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_format_flag_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("vtepd-cli-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        let file =
            "local = \"192.0.2.1\"\nlog_format = \"text\"\n[[network]]\ndev = \"v\"\nvni = 7\n";
        std::fs::write(&f, file).unwrap();
        let p = f.to_str().unwrap();
        let from_file = run_cfg(&["run", "--config", p]).unwrap();
        let flag = run_cfg(&["run", "--config", p, "--log-format", "json"]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_file.log_format, LogFormat::Text);
        assert_eq!(flag.log_format, LogFormat::Json);
        let flags = run_cfg(&[
            "run",
            "--dev",
            "v0",
            "--local",
            "192.0.2.1",
            "--log-format",
            "json",
        ]);
        assert_eq!(flags.unwrap().log_format, LogFormat::Json);
        let e = run_cfg(&[
            "run",
            "--dev",
            "v0",
            "--local",
            "192.0.2.1",
            "--log-format",
            "xml",
        ]);
        assert!(e.unwrap_err().message().contains("expected text or json"));
    }

    #[test]
    fn client_subcommands_parse() {
        match parse(&["fdb", "add", "02:00:00:00:00:01", "192.0.2.5", "--vni", "3"])
            .unwrap()
            .command
        {
            Command::Fdb(FdbCommand::Add {
                mac,
                remote,
                vni,
                ctl,
            }) => {
                assert_eq!(mac.to_string(), "02:00:00:00:00:01");
                assert_eq!(remote, Ipv4Addr::new(192, 0, 2, 5));
                assert_eq!(vni.map(Vni::get), Some(3));
                assert_eq!(ctl.control, PathBuf::from(config::DEFAULT_CONTROL));
            }
            c => panic!("{c:?}"),
        }
        match parse(&["fdb", "flush", "--learned-only", "--control", "/tmp/a"])
            .unwrap()
            .command
        {
            Command::Fdb(FdbCommand::Flush {
                vni: None,
                learned_only: true,
                ctl,
            }) => {
                assert_eq!(ctl.control, PathBuf::from("/tmp/a"))
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            parse(&["peers", "show", "--json"]).unwrap().command,
            Command::Peers(PeersCommand::Show { json: true, .. })
        ));
        assert!(matches!(
            parse(&["stats", "--json"]).unwrap().command,
            Command::Stats(StatsArgs { json: true, .. })
        ));
        for bad in [
            &["fdb", "add", "ff:ff:ff:ff:ff:ff", "192.0.2.5"][..],
            &["fdb", "add", "02:00:00:00:00:01", "0.0.0.0"],
            &["fdb", "del", "zz"],
            &["fdb", "show", "--vni", "99999999"],
            &["peers", "add", "300.1.1.1"],
            &["peers", "del"],
            &["stats", "--control", ""],
            &["neigh", "add", "10.0.0.1", "ff:ff:ff:ff:ff:ff"],
            &["neigh", "add", "224.0.0.1", "02:00:00:00:00:01"],
            &["neigh", "del"],
        ] {
            let e = parse(bad).unwrap_err();
            let line = one_line_clap_error(&e);
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "{bad:?}: {line:?}"
            );
        }
    }
}
