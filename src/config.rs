//! Daemon configuration: built from `vtepd run` flags or read from a TOML file, and validated
//! completely before anything touches the system.
//!
//! Every parse helper here returns a one-line, human-readable reason; the CLI uses the same
//! helpers as clap value parsers, so a flag and a TOML key reject the same inputs the same way.

pub mod outer;
pub mod reload;
pub mod store;

pub use crate::core::dampening::MoveLimit;
use crate::core::route::{self, Route};
pub use crate::core::storm::StormLimits;
use crate::core::{DEFAULT_AGEING, DEFAULT_MAX_LEARNED, UnusableRemote};
use encap::{MacAddr, Vni};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use outer::Outer;
pub use store::StoreOptions;

/// Default control socket path.
pub const DEFAULT_CONTROL: &str = "/run/vtepd/vtepd.sock";
/// Default VNI when `--vni` is not given.
pub const DEFAULT_VNI: u32 = 1;
/// Smallest MTU accepted for a device (the IPv4 minimum).
pub const MIN_MTU: u16 = 68;
/// Largest MTU accepted for a device (a VXLAN datagram must still fit in 64 KiB).
pub const MAX_MTU: u16 = 65_000;
/// Largest number of worker threads accepted.
pub const MAX_THREADS: usize = 64;
/// Longest device name Linux accepts (IFNAMSIZ - 1).
pub const MAX_DEV_NAME: usize = 15;
/// Longest Unix socket path (sun_path is 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// A configuration that was rejected. Shown (`Display`) as one line: control characters the
/// message quotes from the input (a TOML string may hold a line break) are escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// An IPv4 address with a prefix length, like `10.0.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not an IPv4 CIDR (expected like 10.0.0.1/24)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("'{s}': '{a}' is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("'{s}': prefix length '{p}' is not in 0..=32"))?;
        if prefix == 0 {
            return Err(format!(
                "'{s}': prefix length 0 is not a usable interface address"
            ));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
            return Err(format!("'{s}': {addr} is not a usable interface address"));
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

/// An IPv6 address with a prefix length, like `fd00:1::1/64`: vtepd's own IPv6 address on an
/// IPIP device (`--address6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Cidr {
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length, 1..=128.
    pub prefix: u8,
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net: ipnet::Ipv6Net = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv6 CIDR (expected like fd00:1::1/64)"))?;
        let addr = net.addr();
        if net.prefix_len() == 0 {
            return Err(format!(
                "'{s}': prefix length 0 is not a usable interface address"
            ));
        }
        // Link-local addresses are the kernel's own (and vtepd keeps the device free of them).
        if addr.is_unspecified()
            || addr.is_loopback()
            || addr.is_multicast()
            || addr.is_unicast_link_local()
        {
            return Err(format!(
                "'{s}': {addr} is not a usable interface address (a global or unique local \
                 unicast address is)"
            ));
        }
        Ok(Ipv6Cidr {
            addr,
            prefix: net.prefix_len(),
        })
    }
}

/// Parses a VNI (0..=2^24-1).
pub fn parse_vni(s: &str) -> Result<Vni, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a VNI (a number)"))?;
    vni_from(v)
}

fn vni_from(v: u64) -> Result<Vni, String> {
    u32::try_from(v)
        .ok()
        .and_then(|v| Vni::new(v).ok())
        .ok_or_else(|| format!("VNI {v} is out of range (0..={})", Vni::MAX))
}

/// Parses a UDP port (1..=65535).
pub fn parse_port(s: &str) -> Result<u16, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a port number"))?;
    port_from(v)
}

fn port_from(v: u64) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {v} is not in 1..=65535"))
}

/// Parses a device MTU.
pub fn parse_mtu(s: &str) -> Result<u16, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an MTU (a number)"))?;
    mtu_from(v)
}

fn mtu_from(v: u64) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
        .ok_or_else(|| format!("MTU {v} is not in {MIN_MTU}..={MAX_MTU}"))
}

/// Parses a command-line `key=value,...` list into the type of the configuration file's table
/// of the same keys (for example `moves=3,window=60` for `mac_move = { moves = 3, window = 60 }`),
/// so a flag and its file key are read by one parser.
pub fn parse_inline_table<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrap<T> {
        v: T,
    }
    let pairs = s
        .split(',')
        .all(|kv| kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()));
    if !pairs || s.contains(['\n', '\r', '{', '}', '#', '[']) {
        return Err(format!("{s:?} is not a key=value,... list"));
    }
    toml::from_str::<Wrap<T>>(&format!("v = {{ {} }}", s.replace(',', ", ")))
        .map(|w| w.v)
        .map_err(|e| format!("{s:?}: {}", e.message()))
}

/// Parses an ageing time in seconds (at least 1).
pub fn parse_ageing(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    ageing_from(v)
}

fn ageing_from(v: u64) -> Result<u64, String> {
    if (1..=10_000_000).contains(&v) {
        Ok(v)
    } else {
        Err(format!("ageing time {v}s is not in 1..=10000000"))
    }
}

/// Parses a cap on learned FDB entries (at least 1).
pub fn parse_max_fdb(s: &str) -> Result<usize, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of entries"))?;
    max_fdb_from(v)
}

fn max_fdb_from(v: u64) -> Result<usize, String> {
    usize::try_from(v)
        .ok()
        .filter(|n| (1..=16_777_216).contains(n))
        .ok_or_else(|| format!("FDB cap {v} is not in 1..=16777216"))
}

/// Parses a worker thread count.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a thread count"))?;
    threads_from(v)
}

/// The default worker thread count: one per CPU this process may run on (capped).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
}

fn threads_from(v: u64) -> Result<usize, String> {
    usize::try_from(v)
        .ok()
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .ok_or_else(|| format!("thread count {v} is not in 1..={MAX_THREADS}"))
}

/// Parses our own underlay address (`--local`): not unspecified, multicast or broadcast (a
/// loopback address is fine: two daemons on one host can tunnel over it). A remote VTEP's
/// address is checked by [`parse_remote_ip`].
pub fn parse_vtep_ip(s: &str) -> Result<IpAddr, String> {
    let a: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    if a.is_unspecified() || a.is_multicast() || a == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!(
            "{a} cannot be a tunnel endpoint (unspecified, multicast or broadcast)"
        ));
    }
    Ok(a)
}

/// Parses a remote VTEP's address (`--peer`, a static FDB remote, `fdb add`, `peers add`): a
/// unicast address of another host, reachable over the underlay (see [`UnusableRemote`]; our
/// own address is refused where it is known).
pub fn parse_remote_ip(s: &str) -> Result<IpAddr, String> {
    let a: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    match UnusableRemote::of(a) {
        Some(e) => Err(e.to_string()),
        None => Ok(a),
    }
}

/// Parses a unicast, non-zero MAC address (an FDB key).
pub fn parse_unicast_mac(s: &str) -> Result<MacAddr, String> {
    let m: MacAddr = s.trim().parse().map_err(|e| format!("'{s}': {e}"))?;
    if !m.is_unicast() {
        return Err(format!("{m} is not a unicast MAC address"));
    }
    Ok(m)
}

/// Parses an overlay neighbour address, IPv4 or IPv6 (unicast: not unspecified, multicast,
/// broadcast, loopback or IPv4-mapped).
pub fn parse_neigh_ip(s: &str) -> Result<IpAddr, String> {
    let a: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    if !crate::core::neigh::usable_neigh(a) {
        return Err(format!(
            "{a} cannot be a neighbour (unspecified, multicast, broadcast, loopback or \
             IPv4-mapped)"
        ));
    }
    Ok(a)
}

/// Parses a static neighbour `IP=MAC` (`--neigh`).
pub fn parse_neigh(s: &str) -> Result<StaticNeigh, String> {
    let (ip, mac) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not IP=MAC (like 10.244.1.0=02:00:00:00:00:01)"))?;
    Ok(StaticNeigh {
        ip: parse_neigh_ip(ip)?,
        mac: parse_unicast_mac(mac)?,
    })
}

/// Checks a Linux interface name the way the kernel does (`dev_valid_name`).
pub fn parse_dev_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("device name is empty".into());
    }
    if s.len() > MAX_DEV_NAME {
        return Err(format!(
            "device name '{s}' is longer than {MAX_DEV_NAME} bytes"
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("'{s}' is not a valid device name"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("device name {s:?} contains a control character"));
    }
    Ok(s.to_owned())
}

/// Checks a control socket path.
pub fn parse_control_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("control socket path is empty".into());
    }
    if s.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "control socket path is longer than {MAX_SOCKET_PATH} bytes"
        ));
    }
    if s.ends_with('/') {
        return Err(format!("control socket path '{s}' names a directory"));
    }
    Ok(PathBuf::from(s))
}

/// Checks a Prometheus metrics listener address (`--metrics`, `metrics = "..."`): an IP address
/// and a port, like `127.0.0.1:9570` or `[::1]:9570`. Whether it can be bound (the address is
/// local, the port free) is checked when the daemon starts, before anything is created.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|_| {
        format!("metrics address '{s}' is not IP:PORT (like 127.0.0.1:9570 or [::1]:9570)")
    })?;
    if addr.port() == 0 {
        return Err(format!("metrics address '{s}' needs a port other than 0"));
    }
    Ok(addr)
}

/// Device mode: what the local device carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Ethernet frames on a TAP device.
    #[default]
    L2,
    /// IP packets on a TUN device.
    L3,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "l2" => Ok(Mode::L2),
            "l3" => Ok(Mode::L3),
            m => Err(format!("mode '{m}': expected l2 or l3")),
        }
    }
}

/// How the daemon writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per event (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`, ...).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            f => Err(format!("log format '{f}': expected text or json")),
        }
    }
}

/// Encapsulation on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encap {
    /// VXLAN over UDP (RFC 7348).
    #[default]
    Vxlan,
    /// IPv4-in-IPv4 (RFC 2003), IP protocol 4.
    Ipip,
}

impl FromStr for Encap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "vxlan" => Ok(Encap::Vxlan),
            "ipip" => Ok(Encap::Ipip),
            e => Err(format!("encap '{e}': expected vxlan or ipip")),
        }
    }
}

/// What the daemon runs: its device kind and its encapsulation as one value, so the pair that
/// makes no sense (an L2 device over IPIP) cannot be represented. Built from `--mode` and
/// `--encap` (or the file's `mode` and `encap`) by [`Tunnel::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tunnel {
    /// Ethernet frames on TAP devices over VXLAN (`--mode l2`).
    #[default]
    L2Vxlan,
    /// IP packets on a TUN device over VXLAN, vtepd the L2 endpoint (`--mode l3 --encap vxlan`).
    L3Vxlan,
    /// IP packets on a TUN device over IPIP (`--mode l3 --encap ipip`).
    L3Ipip,
}

impl Tunnel {
    /// The tunnel `mode` and `encap` name (each defaulted when absent).
    pub fn new(mode: Option<Mode>, encap: Option<Encap>) -> Result<Tunnel, ConfigError> {
        match (mode.unwrap_or_default(), encap.unwrap_or_default()) {
            (Mode::L2, Encap::Vxlan) => Ok(Tunnel::L2Vxlan),
            (Mode::L3, Encap::Vxlan) => Ok(Tunnel::L3Vxlan),
            (Mode::L3, Encap::Ipip) => Ok(Tunnel::L3Ipip),
            (Mode::L2, Encap::Ipip) => err("--encap ipip carries IP packets: it needs --mode l3"),
        }
    }

    /// Whether the underlay carries VXLAN (else IPIP).
    pub fn is_vxlan(self) -> bool {
        self != Tunnel::L3Ipip
    }

    /// Short name, as in thread names (`vtepd-<name>-<n>`) and logs: `l2`, `l3vx`, `ipip`.
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::L2Vxlan => "l2",
            Tunnel::L3Vxlan => "l3vx",
            Tunnel::L3Ipip => "ipip",
        }
    }
}

/// Parses a `--route CIDR=IP` value (see [`route::parse_route`]).
pub fn parse_route(s: &str) -> Result<Route, String> {
    route::parse_route(s)
}

/// A static FDB entry from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticFdb {
    /// MAC address.
    pub mac: MacAddr,
    /// Remote VTEP.
    pub remote: IpAddr,
}

/// A static neighbour binding (overlay IP -> MAC) from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticNeigh {
    /// Overlay address (IPv6 only for L2 ND suppression).
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// One overlay network: a TAP device bridged to one VNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// TAP device name.
    pub dev: String,
    /// VXLAN network identifier.
    pub vni: Vni,
    /// Head-end replication list.
    pub peers: Vec<IpAddr>,
    /// Address to put on the device.
    pub address: Option<Ipv4Cidr>,
    /// IPv6 address to put on the device (IPIP: it then carries IPv6, protocol 41).
    pub address6: Option<Ipv6Cidr>,
    /// Device MTU (default: underlay MTU - 50).
    pub mtu: Option<u16>,
    /// Learn remote MACs from the data path.
    pub learning: bool,
    /// Ageing time of learned entries.
    pub ageing: Duration,
    /// Cap on learned entries.
    pub max_fdb: usize,
    /// Static FDB entries installed at start.
    pub fdb: Vec<StaticFdb>,
    /// Static neighbour bindings installed at start (L3 VXLAN next hops; L2 ARP suppression).
    pub neigh: Vec<StaticNeigh>,
    /// Answer local ARP requests for known remote addresses instead of flooding them (L2).
    pub arp_suppress: bool,
    /// L3 routes through the tunnel (overlay prefix -> next hop).
    pub routes: Vec<Route>,
    /// The overlay prefixes behind this host, registered in the store for the others to
    /// route to (`--advertise`; L3 modes with `--store`; IPv6 ones with `address6`).
    pub advertise: Vec<ipnet::IpNet>,
    /// Announce the MACs seen on the device through the store (L2 with `--store`).
    pub announce: bool,
    /// MAC-move dampening (`mac_move = { moves, window, hold }`; `moves = 0`: off).
    pub mac_move: MoveLimit,
    /// Storm control of flooded frames from the device, frames/s per kind (L2).
    pub storm: StormLimits,
    /// Outer-header policy (TTL, TOS, DF, source ports, UDP checksum).
    pub outer: Outer,
    /// VXLAN: its own UDP port (`port` in its `[[network]]`, like ip-link's `dstport`), when it
    /// differs from the daemon's ([`DaemonConfig::port_of`]).
    pub port: Option<u16>,
}

/// A complete, validated daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Our underlay address (the UDP socket binds to it).
    pub local: IpAddr,
    /// VXLAN UDP port (destination and bound source) of every network not given its own.
    pub port: u16,
    /// Accept decapsulation from any source.
    pub allow_any_peer: bool,
    /// What runs: L2 VXLAN (TAP), L3 VXLAN or L3 IPIP (TUN).
    pub tunnel: Tunnel,
    /// Dataplane worker threads.
    pub threads: usize,
    /// Workers poll without sleeping (`--busy-poll`).
    pub busy_poll: bool,
    /// Control socket path.
    pub control: PathBuf,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: no metrics listener.
    pub metrics: Option<SocketAddr>,
    /// The store of a store-driven fabric (`--store`; none: static configuration only).
    pub store: StoreOptions,
    /// The networks, in configuration order.
    pub networks: Vec<NetConfig>,
}

impl NetConfig {
    /// What the forwarding core needs of this network, with the device's MAC and its UDP port
    /// ([`DaemonConfig::port_of`]).
    pub fn to_core(&self, own_mac: MacAddr, port: u16) -> crate::core::NetworkConfig {
        crate::core::NetworkConfig {
            vni: self.vni,
            port,
            peers: self.peers.clone(),
            own_mac,
            learning: self.learning,
            ageing: self.ageing,
            max_learned: self.max_fdb,
            mac_move: self.mac_move,
            storm: self.storm,
            announce: self.announce,
            remote_csum_rx: self.outer.remote_csum_rx(),
            remote_csum_tx: self.outer.remote_csum_tx(),
        }
    }

    /// The settings a reload can change while the network runs.
    pub fn settings(&self) -> crate::core::network::NetSettings {
        crate::core::network::NetSettings {
            learning: self.learning,
            ageing: self.ageing,
            max_learned: self.max_fdb,
            mac_move: self.mac_move,
            storm: self.storm,
            arp_suppress: self.arp_suppress,
        }
    }

    /// A network with default settings.
    pub fn new(dev: String, vni: Vni) -> NetConfig {
        NetConfig {
            dev,
            vni,
            peers: Vec::new(),
            address: None,
            address6: None,
            mtu: None,
            learning: true,
            ageing: DEFAULT_AGEING,
            max_fdb: DEFAULT_MAX_LEARNED,
            fdb: Vec::new(),
            neigh: Vec::new(),
            arp_suppress: false,
            routes: Vec::new(),
            advertise: Vec::new(),
            announce: false,
            mac_move: MoveLimit::default(),
            storm: StormLimits::default(),
            outer: Outer::default(),
            port: None,
        }
    }
}

impl DaemonConfig {
    /// The UDP port of network `n` (VXLAN): the one it sends to and listens on.
    pub fn port_of(&self, n: &NetConfig) -> u16 {
        n.port.unwrap_or(self.port)
    }

    /// Whether the sockets of UDP port `port` accept a zero UDP checksum over IPv6: when any
    /// network on the port asks (`udp6_zero_csum_rx`).
    pub fn zero_csum6_rx(&self, port: u16) -> bool {
        self.networks
            .iter()
            .any(|n| self.port_of(n) == port && n.outer.udp6_zero_csum_rx == Some(true))
    }

    /// The distinct UDP ports of the networks (VXLAN), in the order networks first use them:
    /// the daemon listens on each.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        for n in &self.networks {
            let p = self.port_of(n);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports
    }

    /// Cross-field checks that single-value parsing cannot do: at least one network, no
    /// duplicate VNI, device, peer or static MAC, no peer or static remote equal to `local`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.networks.is_empty() {
            return err("no network configured (give --dev/--local or a [[network]] in the file)");
        }
        if self.networks.len() > usize::from(u16::MAX) {
            return err("too many networks");
        }
        self.validate_mode()?;
        if let Some((n, why)) = self
            .networks
            .iter()
            .find_map(|n| n.outer.conflict().map(|w| (n, w)))
        {
            return err(format!("dev {}: {why}", n.dev));
        }
        let store = self.store.settings().map_err(ConfigError)?;
        if let Some(n) = self.networks.iter().find(|n| !n.advertise.is_empty()) {
            if self.tunnel == Tunnel::L2Vxlan {
                return err(format!(
                    "dev {}: advertise is for --mode l3 (the prefixes other hosts route to us)",
                    n.dev
                ));
            }
            if store.is_none() {
                return err(format!("dev {}: advertise needs --store", n.dev));
            }
        }
        if let Some(n) = self
            .networks
            .iter()
            .find(|n| n.outer.remote_csum_tx() == crate::core::remote_csum::TxMode::Auto)
            && store.is_none()
        {
            return err(format!(
                "dev {}: remcsum_tx auto needs --store (its members say there whether they take \
                 the option; use on toward peers that all do)",
                n.dev
            ));
        }
        if let Some((n, p)) = self.networks.iter().find_map(|n| {
            let v6 = n
                .advertise
                .iter()
                .find(|p| matches!(p, ipnet::IpNet::V6(_)));
            v6.filter(|_| n.address6.is_none()).map(|p| (n, p))
        }) {
            return err(format!(
                "dev {}: advertise {p}: the device has no IPv6 address (give it one with \
                 --address6)",
                n.dev
            ));
        }
        if let Some(n) = self.networks.iter().find(|n| n.announce) {
            if self.tunnel != Tunnel::L2Vxlan {
                return err(format!(
                    "dev {}: announce is for --mode l2 (the MACs behind a TAP device)",
                    n.dev
                ));
            }
            if store.is_none() {
                return err(format!("dev {}: announce needs --store", n.dev));
            }
        }
        let mut vnis = HashSet::new();
        let mut devs = HashSet::new();
        for n in &self.networks {
            let what = format!("network {} (dev {})", n.vni, n.dev);
            if !vnis.insert(n.vni) {
                return err(format!("VNI {} is configured twice", n.vni));
            }
            if !devs.insert(n.dev.as_str()) {
                return err(format!("device {} is configured twice", n.dev));
            }
            n.mac_move
                .validate()
                .and_then(|()| n.storm.validate())
                .map_err(|e| ConfigError(format!("{what}: {e}")))?;
            let mut peers = HashSet::new();
            for p in &n.peers {
                if *p == self.local {
                    return err(format!("{what}: peer {p} is our own --local address"));
                }
                if !peers.insert(p) {
                    return err(format!("{what}: peer {p} is listed twice"));
                }
                UnusableRemote::check(self.local, *p)
                    .map_err(|e| ConfigError(format!("{what}: peer: {e}")))?;
            }
            let mut macs = HashSet::new();
            for e in &n.fdb {
                if e.remote == self.local {
                    return err(format!(
                        "{what}: static entry {} points to our own address",
                        e.mac
                    ));
                }
                if !macs.insert(e.mac) {
                    return err(format!("{what}: static entry {} is listed twice", e.mac));
                }
                UnusableRemote::check(self.local, e.remote)
                    .map_err(|err| ConfigError(format!("{what}: static entry {}: {err}", e.mac)))?;
            }
            let mut ips = HashSet::new();
            for e in &n.neigh {
                if !ips.insert(e.ip) {
                    return err(format!("{what}: neighbour {} is listed twice", e.ip));
                }
                if n.address.is_some_and(|a| IpAddr::V4(a.addr) == e.ip) {
                    return err(format!(
                        "{what}: neighbour {} is the device's own address",
                        e.ip
                    ));
                }
            }
        }
        Ok(())
    }

    /// Our underlay address where an IPv4 one is needed: IPIP's (which
    /// [`DaemonConfig::validate`] refuses over IPv6); for L3 VXLAN's
    /// overlay route checks, `UNSPECIFIED` over IPv6 (no IPv4 address of ours to keep out of
    /// a route).
    pub fn local_v4(&self) -> Ipv4Addr {
        match self.local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The rules that depend on `mode` and `encap`.
    fn validate_mode(&self) -> Result<(), ConfigError> {
        if self.local.is_ipv6() {
            match self.tunnel {
                // The overlay is IPv4 either way; L3 VXLAN's next hops are overlay addresses.
                Tunnel::L2Vxlan | Tunnel::L3Vxlan => {}
                Tunnel::L3Ipip => {
                    return err(format!(
                        "--local {}: --encap ipip runs over an IPv4 underlay (protocol 4 in IPv4)",
                        self.local
                    ));
                }
            }
        }
        if self.tunnel == Tunnel::L2Vxlan
            && let Some(n) = self.networks.iter().find(|n| n.address6.is_some())
        {
            return err(format!(
                "dev {}: --address6 is for --mode l3 (vtepd's own IPv6 address on its TUN \
                 device); in --mode l2 the hosts behind the TAP device hold the addresses",
                n.dev
            ));
        }
        match self.tunnel {
            Tunnel::L2Vxlan => {
                if let Some(n) = self.networks.iter().find(|n| !n.routes.is_empty()) {
                    return err(format!("dev {}: routes need --mode l3", n.dev));
                }
                if let Some(n) = self
                    .networks
                    .iter()
                    .find(|n| !n.neigh.is_empty() && !n.arp_suppress)
                {
                    return err(format!(
                        "dev {}: static neighbours in --mode l2 are only used by --arp-suppress",
                        n.dev
                    ));
                }
                return Ok(());
            }
            _ if self
                .networks
                .iter()
                .any(|n| n.storm != StormLimits::default()) =>
            {
                return err("storm control is for --mode l2 (frames a TAP device floods)");
            }
            Tunnel::L3Vxlan => return self.validate_l3_vxlan(),
            Tunnel::L3Ipip => {}
        }
        if let Some(n) = self
            .networks
            .iter()
            .find(|n| !n.neigh.is_empty() || n.arp_suppress)
        {
            return err(format!(
                "dev {}: --neigh and --arp-suppress are for VXLAN; IPIP has no link layer",
                n.dev
            ));
        }
        if let Some((n, key)) = self.networks.iter().find_map(|n| {
            let port = n.port.is_some().then_some("port");
            port.or(n.outer.vxlan_only().map(|(_, key)| key))
                .map(|key| (n, key))
        }) {
            return err(format!(
                "dev {}: {key} is for VXLAN: IPIP has no UDP header",
                n.dev
            ));
        }
        let [n] = self.networks.as_slice() else {
            return err("--encap ipip runs one TUN device: configure exactly one network");
        };
        if !n.peers.is_empty() {
            return err("--peer is for VXLAN flooding; IPIP sends by --route");
        }
        if !n.fdb.is_empty() {
            return err("static FDB entries are for VXLAN; IPIP sends by --route");
        }
        let routes = route::Routes::new(self.local_v4()).with_ipv6(n.address6.is_some());
        let mut seen = HashSet::new();
        for r in &n.routes {
            if !seen.insert(r.prefix) {
                return err(format!("route {} is listed twice", r.prefix));
            }
            routes
                .add(*r)
                .map_err(|e| ConfigError(format!("route {r}: {e}")))?;
        }
        Ok(())
    }

    /// The rules of `--mode l3 --encap vxlan`: one TUN device with its own overlay address
    /// (vtepd answers ARP for it), overlay next hops, no ARP suppression (that is for L2).
    fn validate_l3_vxlan(&self) -> Result<(), ConfigError> {
        let [n] = self.networks.as_slice() else {
            return err("--mode l3 runs one TUN device: configure exactly one network");
        };
        let Some(a) = n.address else {
            return err(format!(
                "dev {}: --mode l3 --encap vxlan needs --address (vtepd's own overlay address)",
                n.dev
            ));
        };
        if n.arp_suppress {
            return err("--arp-suppress is for --mode l2 (in l3 mode vtepd answers ARP itself)");
        }
        if n.address6.is_none()
            && let Some(e) = n.neigh.iter().find(|e| e.ip.is_ipv6())
        {
            return err(format!(
                "neighbour {}: IPv6 next hops need vtepd's own IPv6 address (--address6)",
                e.ip
            ));
        }
        let mut seen = HashSet::new();
        for r in &n.routes {
            if !seen.insert(r.prefix) {
                return err(format!("route {} is listed twice", r.prefix));
            }
            if r.prefix.contains(&std::net::IpAddr::V4(a.addr)) {
                return err(format!("route {r} covers our own --address {}", a.addr));
            }
            if let Some(a6) = n.address6
                && r.prefix.contains(&std::net::IpAddr::V6(a6.addr))
            {
                return err(format!("route {r} covers our own --address6 {}", a6.addr));
            }
        }
        route::Routes::with_overlay_routes(self.local_v4(), n.address6.is_some(), &n.routes)
            .map_err(|e| ConfigError(format!("route: {e}")))?;
        Ok(())
    }

    /// Reads and validates a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        DaemonConfig::from_toml(&text)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<DaemonConfig, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let cfg = file.into_config()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// This configuration as a TOML file that [`DaemonConfig::from_toml`] reads back into an
    /// equal configuration (`vtepd config show`). Keys at their default are left out, except
    /// the daemon-wide ones (mode, encap, threads, control, log format), which are written as
    /// they are: the file then runs the same daemon on another machine.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let vxlan = self.tunnel.is_vxlan();
        let file = FileConfig {
            local: self.local.to_string(),
            port: vxlan.then_some(u64::from(self.port)),
            allow_any_peer: self.allow_any_peer,
            mode: Some(
                if self.tunnel == Tunnel::L2Vxlan {
                    "l2"
                } else {
                    "l3"
                }
                .into(),
            ),
            encap: Some(if vxlan { "vxlan" } else { "ipip" }.into()),
            threads: Some(self.threads as u64),
            busy_poll: self.busy_poll,
            control: Some(self.control.to_string_lossy().into_owned()),
            log_format: Some(
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            metrics: self.metrics.map(|m| m.to_string()),
            store: self.store.store.clone(),
            store_prefix: self.store.store_prefix.clone(),
            store_ttl: self.store.store_ttl,
            networks: self
                .networks
                .iter()
                .map(|n| FileNetwork::of(n, vxlan))
                .collect(),
        };
        toml::to_string(&file).map_err(|e| ConfigError(format!("cannot write TOML: {e}")))
    }
}

/// Where a daemon's configuration came from, so that a reload reads it exactly as the start
/// did: the file, and the command-line options given with it that override its keys (they are
/// applied again on every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The file (`--config`).
    pub path: PathBuf,
    /// `--control`, overriding the file's `control`.
    pub control: Option<PathBuf>,
    /// `--log-format`, overriding the file's `log_format`.
    pub log_format: Option<LogFormat>,
    /// `--metrics`, overriding the file's `metrics`.
    pub metrics: Option<SocketAddr>,
}

impl ConfigSource {
    /// Reads and validates the file, with the overrides applied.
    pub fn load(&self) -> Result<DaemonConfig, ConfigError> {
        let mut cfg = DaemonConfig::from_file(&self.path)?;
        if let Some(c) = &self.control {
            cfg.control = c.clone();
        }
        if let Some(f) = self.log_format {
            cfg.log_format = f;
        }
        if let Some(m) = self.metrics {
            cfg.metrics = Some(m);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Renders a TOML error on one line: `line N: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |t| t.matches('\n').count())
                + 1;
            ConfigError(format!("line {line}: {msg}"))
        }
        None => ConfigError(msg),
    }
}

/// The file format. Addresses are strings parsed by the helpers above so that a bad value gets
/// the same message as on the command line; numbers are wide so that range errors are ours.
///
/// The same types are written by [`DaemonConfig::to_toml`], so what `config show` prints is
/// read back by the one parser.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_any_peer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    busy_poll: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<String>,
    // The store's keys, read by the parsers of its flags (`store::StoreOptions`); not flattened,
    // which would cost the other keys' errors their line numbers.
    #[serde(
        default,
        deserialize_with = "store::de_store",
        skip_serializing_if = "Option::is_none"
    )]
    store: Option<store::StoreEndpoints>,
    #[serde(
        default,
        deserialize_with = "store::de_prefix",
        skip_serializing_if = "Option::is_none"
    )]
    store_prefix: Option<String>,
    #[serde(
        default,
        deserialize_with = "store::de_ttl",
        skip_serializing_if = "Option::is_none"
    )]
    store_ttl: Option<u64>,
    #[serde(default, rename = "network")]
    networks: Vec<FileNetwork>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    dev: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vni: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u64>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    learning: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ageing: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_fdb: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    arp_suppress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u64>,
    #[serde(flatten)]
    outer: Outer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    advertise: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    announce: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    mac_move: MoveLimit,
    #[serde(default, skip_serializing_if = "is_default")]
    storm: StormLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fdb: Vec<FileFdb>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    neigh: Vec<FileNeigh>,
}

impl FileNetwork {
    /// The file form of `n` (`vxlan`: whether the daemon runs VXLAN, which has VNIs).
    fn of(n: &NetConfig, vxlan: bool) -> FileNetwork {
        let secs = n.ageing.as_secs();
        FileNetwork {
            dev: n.dev.clone(),
            vni: vxlan.then_some(u64::from(n.vni.get())),
            peers: n.peers.iter().map(ToString::to_string).collect(),
            address: n.address.map(|a| a.to_string()),
            address6: n.address6.map(|a| a.to_string()),
            mtu: n.mtu.map(u64::from),
            learning: n.learning,
            ageing: (n.ageing != DEFAULT_AGEING).then_some(secs),
            max_fdb: (n.max_fdb != DEFAULT_MAX_LEARNED).then_some(n.max_fdb as u64),
            arp_suppress: n.arp_suppress,
            port: n.port.map(u64::from),
            outer: n.outer,
            routes: n
                .routes
                .iter()
                .map(|r| format!("{}={}", r.prefix, r.via))
                .collect(),
            advertise: n.advertise.iter().map(ToString::to_string).collect(),
            announce: n.announce,
            mac_move: n.mac_move,
            storm: n.storm,
            fdb: n
                .fdb
                .iter()
                .map(|e| FileFdb {
                    mac: e.mac.to_string(),
                    remote: e.remote.to_string(),
                })
                .collect(),
            neigh: n
                .neigh
                .iter()
                .map(|e| FileNeigh {
                    ip: e.ip.to_string(),
                    mac: e.mac.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileNeigh {
    ip: String,
    mac: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileFdb {
    mac: String,
    remote: String,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl FileConfig {
    fn into_config(self) -> Result<DaemonConfig, ConfigError> {
        let local = parse_vtep_ip(&self.local).map_err(|e| ConfigError(format!("local: {e}")))?;
        let port = match self.port {
            Some(p) => port_from(p).map_err(ConfigError)?,
            None => encap::vxlan::DEFAULT_PORT,
        };
        let threads = match self.threads {
            Some(t) => Some(threads_from(t).map_err(ConfigError)?),
            None => None,
        };
        let control = parse_control_path(self.control.as_deref().unwrap_or(DEFAULT_CONTROL))
            .map_err(ConfigError)?;
        let log_format: LogFormat = self
            .log_format
            .as_deref()
            .map_or(Ok(LogFormat::Text), str::parse)
            .map_err(ConfigError)?;
        let metrics = self
            .metrics
            .as_deref()
            .map(parse_metrics_addr)
            .transpose()
            .map_err(|e| ConfigError(format!("metrics: {e}")))?;
        let mode: Option<Mode> = self
            .mode
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ConfigError)?;
        let encap: Option<Encap> = self
            .encap
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ConfigError)?;
        let tunnel = Tunnel::new(mode, encap)?;
        if !tunnel.is_vxlan() && self.port.is_some() {
            return Err(ConfigError("port is not used with IPIP".into()));
        }
        let mut networks = Vec::with_capacity(self.networks.len());
        for (i, n) in self.networks.into_iter().enumerate() {
            let ctx = |e: String| ConfigError(format!("network #{}: {e}", i + 1));
            let dev = parse_dev_name(&n.dev).map_err(ctx)?;
            let vni = match (tunnel.is_vxlan(), n.vni) {
                (true, Some(v)) => vni_from(v).map_err(ctx)?,
                (true, None) => return Err(ctx("vni is required with VXLAN".into())),
                (false, Some(_)) => return Err(ctx("vni is not used with IPIP".into())),
                (false, None) => vni_from(u64::from(DEFAULT_VNI)).map_err(ctx)?,
            };
            let mut net = NetConfig::new(dev, vni);
            for p in &n.peers {
                net.peers
                    .push(parse_remote_ip(p).map_err(|e| ctx(format!("peer: {e}")))?);
            }
            net.address = n
                .address
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(ctx)?;
            net.address6 = n
                .address6
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| ctx(format!("address6: {e}")))?;
            net.mtu = n.mtu.map(mtu_from).transpose().map_err(ctx)?;
            net.learning = n.learning;
            if let Some(a) = n.ageing {
                net.ageing = Duration::from_secs(ageing_from(a).map_err(ctx)?);
            }
            if let Some(m) = n.max_fdb {
                net.max_fdb = max_fdb_from(m).map_err(ctx)?;
            }
            for e in &n.fdb {
                let mac = parse_unicast_mac(&e.mac).map_err(|e| ctx(format!("fdb: {e}")))?;
                let remote =
                    parse_remote_ip(&e.remote).map_err(|e| ctx(format!("fdb {mac}: {e}")))?;
                net.fdb.push(StaticFdb { mac, remote });
            }
            for e in &n.neigh {
                let ip = parse_neigh_ip(&e.ip).map_err(|e| ctx(format!("neigh: {e}")))?;
                let mac = parse_unicast_mac(&e.mac).map_err(|e| ctx(format!("neigh {ip}: {e}")))?;
                net.neigh.push(StaticNeigh { ip, mac });
            }
            net.arp_suppress = n.arp_suppress;
            net.announce = n.announce;
            net.mac_move = n.mac_move;
            net.storm = n.storm;
            net.outer = n.outer;
            // Kept only where it differs from the daemon's (IPIP: kept, to be refused).
            net.port = n
                .port
                .map(port_from)
                .transpose()
                .map_err(ctx)?
                .filter(|p| *p != port || !tunnel.is_vxlan());
            for r in &n.routes {
                net.routes.push(parse_route(r).map_err(ctx)?);
            }
            for p in &n.advertise {
                let p = route::parse_prefix(p).map_err(|e| ctx(format!("advertise: {e}")))?;
                net.advertise.push(p);
            }
            networks.push(net);
        }
        Ok(DaemonConfig {
            local,
            port,
            allow_any_peer: self.allow_any_peer,
            tunnel,
            threads: threads.unwrap_or_else(default_threads),
            busy_poll: self.busy_poll,
            control,
            log_format,
            metrics,
            store: StoreOptions {
                store: self.store,
                store_prefix: self.store_prefix,
                store_ttl: self.store_ttl,
            },
            networks,
        })
    }
}

/// A stable, locally administered unicast MAC for a network's device, derived from its device
/// name, VNI and our underlay address, so that a restart with the same configuration keeps it.
///
/// The hash (FNV-1a plus a finaliser) is written out here, rather than `DefaultHasher` or
/// ahash, because its output must never change between Rust or crate versions.
pub fn stable_mac(dev: &str, vni: Vni, local: IpAddr) -> MacAddr {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let vni = vni.get().to_be_bytes();
    // An IPv4 address hashes as its 4 bytes, as it always did.
    let (v4, v6);
    let local: &[u8] = match local {
        IpAddr::V4(a) => {
            v4 = a.octets();
            &v4
        }
        IpAddr::V6(a) => {
            v6 = a.octets();
            &v6
        }
    };
    for b in dev.as_bytes().iter().chain(&[0u8]).chain(&vni).chain(local) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    // FNV-1a alone mixes its last input bytes poorly into the high bytes: finish with the
    // MurmurHash3 64-bit finaliser so every input bit reaches every output byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let b = h.to_be_bytes();
    // Clear the group bit, set the locally-administered bit.
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
local = "192.0.2.1"
port = 4789
control = "/tmp/x.sock"

[[network]]
dev = "vtep42"
vni = 42
peers = ["192.0.2.2", "192.0.2.3"]
address = "10.42.0.1/24"
mtu = 1400
learning = false
ageing = 60
max_fdb = 100
fdb = [{ mac = "02:00:00:00:00:09", remote = "192.0.2.9" }]

[[network]]
dev = "vtep43"
vni = 43
"#;

    fn toml_err(text: &str) -> String {
        DaemonConfig::from_toml(text).unwrap_err().0
    }

    /// `remcsum_tx`: `auto` needs a store, and `config show` writes it as text (on and off as
    /// booleans, like the other on/off keys); each reads back as it was.
    #[test]
    fn remcsum_tx_auto_needs_a_store_and_reads_back() {
        use crate::core::remote_csum::TxMode;
        let net = "[[network]]\ndev = \"v\"\nvni = 1\nremcsum_tx = \"auto\"\n";
        let e = toml_err(&format!("local = \"192.0.2.1\"\n{net}"));
        assert!(e.contains("remcsum_tx auto needs --store"), "{e}");
        let text = format!("local = \"192.0.2.1\"\nstore = \"etcd=http://192.0.2.9:2379\"\n{net}");
        for (given, mode, shown) in [
            ("\"auto\"", TxMode::Auto, "remcsum_tx = \"auto\""),
            ("\"on\"", TxMode::On, "remcsum_tx = true"),
            ("false", TxMode::Off, "remcsum_tx = false"),
        ] {
            let c = DaemonConfig::from_toml(&text.replace("\"auto\"", given)).unwrap();
            assert_eq!(c.networks[0].outer.remote_csum_tx(), mode);
            let back = c.to_toml().unwrap();
            assert!(back.contains(shown), "{back}");
            assert_eq!(DaemonConfig::from_toml(&back).unwrap(), c);
        }
    }

    /// `busy_poll` is off unless set, and `config show` writes it only when on.
    #[test]
    fn busy_poll_reads_back_and_is_shown_only_when_on() {
        let text = "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n";
        let off = DaemonConfig::from_toml(text).unwrap();
        assert!(!off.busy_poll);
        assert!(!off.to_toml().unwrap().contains("busy_poll"));
        let on = DaemonConfig::from_toml(&format!("busy_poll = true\n{text}")).unwrap();
        assert!(on.busy_poll);
        let shown = on.to_toml().unwrap();
        assert!(shown.contains("busy_poll = true"), "{shown}");
        assert_eq!(DaemonConfig::from_toml(&shown).unwrap(), on);
        assert!(
            toml_err(&format!("busy_poll = 1\n{text}"))
                .contains("line 1: invalid type: integer `1`, expected a boolean")
        );
    }

    #[test]
    fn an_ipv6_underlay_takes_ipv6_remotes_and_shows_them_back() {
        let text = "local = \"2001:db8:1::1\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                    peers = [\"2001:db8:1::2\"]\n\
                    fdb = [{ mac = \"02:00:00:00:00:09\", remote = \"2001:db8:1::9\" }]\n";
        let c = DaemonConfig::from_toml(text).unwrap();
        assert_eq!(c.local, "2001:db8:1::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.networks[0].peers,
            ["2001:db8:1::2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            c.networks[0].fdb[0].remote,
            "2001:db8:1::9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(DaemonConfig::from_toml(&c.to_toml().unwrap()).unwrap(), c);
        // The device MAC of an IPv4 underlay is the one it always was; IPv6 gets its own.
        let v4 = stable_mac(
            "v",
            Vni::new(1).unwrap(),
            Ipv4Addr::new(192, 0, 2, 1).into(),
        );
        assert_eq!(v4, MacAddr([0x62, 0x1a, 0x1e, 0x3e, 0x6c, 0x10]));
        assert_ne!(stable_mac("v", Vni::new(1).unwrap(), c.local), v4);
        // L3 VXLAN too (its next hops are overlay addresses); IPIP is refused (above).
        let l3 = "local = \"2001:db8:1::1\"\nmode = \"l3\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                  address = \"10.0.0.1/24\"\npeers = [\"2001:db8:1::2\"]\n";
        assert!(DaemonConfig::from_toml(l3).is_ok());
        // With a store too (its members then register IPv6 underlay addresses).
        let store = "store = \"etcd=http://[2001:db8:1::fe]:2379\"\n";
        for t in [text, l3] {
            let c = DaemonConfig::from_toml(&format!("{store}{t}")).unwrap();
            assert!(c.store.settings().unwrap().is_some());
        }
    }

    #[test]
    fn an_error_quoting_a_line_break_is_shown_on_one_line() {
        let e = DaemonConfig::from_toml("local = \"1\\n2\"\n[[network]]\ndev = \"v\"\nvni = 42\n")
            .unwrap_err();
        assert!(e.0.contains('\n'), "the value is quoted: {e:?}");
        let shown = e.to_string();
        assert!(shown.contains("1\\n2"), "{shown}");
        assert!(!shown.contains(['\n', '\r']), "{shown:?}");
        let failure = crate::error::Failure::from(e);
        assert!(!failure.message().contains('\n'), "{}", failure.message());
    }

    #[test]
    fn good_file_parses() {
        let c = DaemonConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.local, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.control, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.networks.len(), 2);
        let n = &c.networks[0];
        assert_eq!(n.vni.get(), 42);
        assert_eq!(n.peers.len(), 2);
        assert_eq!(n.address.unwrap().to_string(), "10.42.0.1/24");
        assert_eq!(n.mtu, Some(1400));
        assert!(!n.learning);
        assert_eq!(n.ageing, Duration::from_secs(60));
        assert_eq!(n.max_fdb, 100);
        assert_eq!(n.fdb[0].remote, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));
        let d = &c.networks[1];
        assert!(d.learning);
        assert_eq!(d.ageing, DEFAULT_AGEING);
        assert_eq!(c.port, 4789);
        assert_eq!(c.threads, default_threads());
    }

    #[test]
    fn log_format_key() {
        let file =
            |v: &str| format!("local = \"192.0.2.1\"\n{v}[[network]]\ndev = \"v\"\nvni = 1\n");
        let fmt = |v: &str| DaemonConfig::from_toml(&file(v)).map(|c| c.log_format);
        assert_eq!(fmt(""), Ok(LogFormat::Text));
        assert_eq!(fmt("log_format = \"json\"\n"), Ok(LogFormat::Json));
        assert_eq!(fmt("log_format = \"text\"\n"), Ok(LogFormat::Text));
        let e = toml_err(&file("log_format = \"xml\"\n"));
        assert_eq!(e, "log format 'xml': expected text or json");
    }

    #[test]
    fn metrics_key() {
        let file =
            |v: &str| format!("local = \"192.0.2.1\"\n{v}[[network]]\ndev = \"v\"\nvni = 1\n");
        let addr = |v: &str| DaemonConfig::from_toml(&file(v)).map(|c| c.metrics);
        assert_eq!(addr(""), Ok(None));
        assert_eq!(
            addr("metrics = \"127.0.0.1:9570\"\n"),
            Ok(Some("127.0.0.1:9570".parse().unwrap()))
        );
        assert_eq!(
            addr("metrics = \"[::1]:9570\"\n"),
            Ok(Some("[::1]:9570".parse().unwrap()))
        );
        for (bad, want) in [
            ("localhost:9570", "is not IP:PORT"),
            ("127.0.0.1", "is not IP:PORT"),
            ("127.0.0.1:70000", "is not IP:PORT"),
            ("127.0.0.1:0", "port other than 0"),
            ("", "is not IP:PORT"),
        ] {
            let e = toml_err(&file(&format!("metrics = \"{bad}\"\n")));
            assert!(e.starts_with("metrics: metrics address"), "{bad}: {e}");
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(toml_err(&file("metrics = 9570\n")).starts_with("line 2:"));
    }

    /// A remote VTEP must be another host on the underlay, wherever the file names one; our
    /// own address may be loopback.
    #[test]
    fn file_refuses_loopback_and_unspecified_remotes() {
        let net = |body: &str| {
            format!("local = \"127.0.0.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n{body}")
        };
        assert!(DaemonConfig::from_toml(&net("")).is_ok());
        for (body, want) in [
            (
                "peers = [\"127.0.0.2\"]\n",
                "network #1: peer: 127.0.0.2 is a loopback address: a remote VTEP must be reachable over the underlay",
            ),
            (
                "peers = [\"0.0.0.0\"]\n",
                "network #1: peer: 0.0.0.0 is the unspecified address",
            ),
            (
                "fdb = [{ mac = \"02:00:00:00:00:09\", remote = \"127.0.0.1\" }]\n",
                "network #1: fdb 02:00:00:00:00:09: 127.0.0.1 is a loopback address",
            ),
        ] {
            let e = toml_err(&net(body));
            assert!(e.starts_with(want), "{body}: {e}");
        }
        let ipip = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
                    dev = \"t\"\nroutes = [\"10.0.0.0/8=127.0.0.1\"]\n";
        assert!(toml_err(ipip).contains("next hop 127.0.0.1 is a loopback address"));
    }

    /// `address6` (IPIP only): IPv6 routes need it, and it reads back as it was given.
    #[test]
    fn ipip_address6_takes_ipv6_routes() {
        let ipip = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
                    dev = \"t\"\nroutes = [\"10.0.2.0/24=192.0.2.2\", \"fd00:2::/64=192.0.2.2\"]\n";
        assert!(toml_err(ipip).contains("no IPv6 address (give it one with --address6)"));
        let text = format!("{ipip}address6 = \"fd00:1::40/128\"\n");
        let c = DaemonConfig::from_toml(&text).unwrap();
        let n = &c.networks[0];
        assert_eq!(n.address6.unwrap().to_string(), "fd00:1::40/128");
        assert_eq!(n.routes[1].to_string(), "fd00:2::/64 via 192.0.2.2");
        let back = DaemonConfig::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back.networks[0].address6, n.address6);
        let v6_via = text.replace("fd00:2::/64=192.0.2.2", "fd00:2::/64=fd00:9::1");
        assert!(toml_err(&v6_via).contains("IPv4 underlay address"));
        for bad in [
            "fe80::1/64",
            "ff02::1/128",
            "::/128",
            "fd00::1",
            "10.0.0.1/24",
        ] {
            let e = toml_err(&format!("{ipip}address6 = \"{bad}\"\n"));
            assert!(e.contains("address6"), "{bad}: {e}");
        }
        let l2 = "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                  address6 = \"fd00:1::1/64\"\n";
        assert!(toml_err(l2).contains("--address6 is for --mode l3"));
    }

    #[test]
    fn l3_vxlan_and_arp_suppress_files() {
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"vtep0\"\nvni = 1\n\
             address = \"10.244.0.0/32\"\nroutes = [\"10.244.1.0/24=10.244.1.0\"]\n\
             neigh = [{ ip = \"10.244.1.0\", mac = \"02:00:00:00:00:01\" }]\n",
        )
        .unwrap();
        assert_eq!(c.tunnel, Tunnel::L3Vxlan);
        assert_eq!(c.networks[0].neigh[0].ip, Ipv4Addr::new(10, 244, 1, 0));
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\narp_suppress = true\n\
             neigh = [{ ip = \"10.0.0.9\", mac = \"02:00:00:00:00:09\" },\
             { ip = \"fd00::9\", mac = \"02:00:00:00:00:09\" }]\n",
        )
        .unwrap();
        assert!(c.networks[0].arp_suppress);
        assert_eq!(
            c.networks[0].neigh[1].ip,
            "fd00::9".parse::<IpAddr>().unwrap()
        );
        for (text, want) in [
            (
                "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"v\"\nvni = 1\n",
                "needs --address",
            ),
            (
                "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                 address = \"10.0.0.1/32\"\narp_suppress = true\n",
                "for --mode l2",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                 neigh = [{ ip = \"10.0.0.9\", mac = \"02:00:00:00:00:09\" }]\n",
                "only used by --arp-suppress",
            ),
            (
                "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
                 address = \"10.0.0.1/32\"\n\
                 neigh = [{ ip = \"fd00::9\", mac = \"02:00:00:00:00:09\" }]\n",
                "IPv6 next hops need vtepd's own IPv6 address (--address6)",
            ),
        ] {
            let e = toml_err(text);
            assert!(e.contains(want), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn file_defaults() {
        let c =
            DaemonConfig::from_toml("local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 0\n")
                .unwrap();
        assert_eq!(c.port, 4789);
        assert_eq!(c.control, PathBuf::from(DEFAULT_CONTROL));
        assert!(!c.allow_any_peer);
    }

    #[test]
    fn dampening_and_storm_control_parse_from_the_file_and_flags() {
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n\
             mac_move = { moves = 3, window = 60 }\nstorm = { broadcast = 1000, multicast = 50 }\n\
             [[network]]\ndev = \"w\"\nvni = 2\n",
        )
        .unwrap();
        let (n, d) = (&c.networks[0], &c.networks[1]);
        let limit = MoveLimit {
            moves: 3,
            window: 60,
            hold: 180,
        };
        assert_eq!(n.mac_move, limit);
        assert_eq!(
            n.storm,
            StormLimits {
                broadcast: Some(1000),
                unknown_unicast: None,
                multicast: Some(50),
            }
        );
        assert_eq!((d.mac_move, d.storm), Default::default());
        // The flags' form reads the same keys.
        assert_eq!(
            parse_inline_table::<MoveLimit>("moves=3,window=60"),
            Ok(limit)
        );
        assert_eq!(
            parse_inline_table::<StormLimits>("unknown_unicast=7").map(|s| s.unknown_unicast),
            Ok(Some(7))
        );
        for bad in ["moves=x", "flood=1", "moves=1}", "moves=1\nx=2", "moves"] {
            assert!(parse_inline_table::<MoveLimit>(bad).is_err(), "{bad}");
        }
        let net = "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\n";
        for (extra, msg) in [
            ("storm = { broadcast = 0 }", "at least 1"),
            ("storm = { flood = 5 }", "unknown field"),
            ("mac_move = { window = 0 }", "window"),
            ("mac_move = { moves = 5, hold = 90000 }", "hold"),
        ] {
            let e = toml_err(&format!("{net}{extra}\n"));
            assert!(e.contains(msg), "{extra}: {e}");
        }
        let l3 = "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev=\"v\"\nvni=1\n\
                  address = \"10.0.0.1/24\"\nstorm = { broadcast = 10 }\n";
        assert!(toml_err(l3).contains("--mode l2"), "{}", toml_err(l3));
    }

    #[test]
    fn file_errors_are_one_line() {
        let cases: &[(&str, &str)] = &[
            (
                "local = \"192.0.2.1\"\nbogus = 1\n[[network]]\ndev=\"v\"\nvni=1\n",
                "line 2",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\ncolour=1\n",
                "unknown field",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=16777216\n",
                "out of range",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=-1\n",
                "line 4",
            ),
            (
                "local = \"1.2.3\"\n[[network]]\ndev=\"v\"\nvni=1\n",
                "not an IPv4",
            ),
            (
                "local = \"224.0.0.1\"\n[[network]]\ndev=\"v\"\nvni=1\n",
                "tunnel endpoint",
            ),
            (
                "local = \"192.0.2.1\"\nport = 70000\n[[network]]\ndev=\"v\"\nvni=1\n",
                "port",
            ),
            (
                "local = \"192.0.2.1\"\nport = 0\n[[network]]\ndev=\"v\"\nvni=1\n",
                "port",
            ),
            ("local = \"192.0.2.1\"\n", "no network"),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"a-very-long-device-name\"\nvni=1\n",
                "longer",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\naddress=\"10.0.0.1/33\"\n",
                "prefix",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\naddress=\"10.0.0.1\"\n",
                "CIDR",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nmtu=20\n",
                "MTU",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nageing=0\n",
                "ageing",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nmax_fdb=0\n",
                "cap",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\npeers=[\"x\"]\n",
                "peer",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\npeers=[\"192.0.2.1\"]\n",
                "own",
            ),
            (
                "local = \"2001:db8::1\"\n[[network]]\ndev=\"v\"\nvni=1\npeers=[\"192.0.2.2\"]\n",
                "192.0.2.2 is an IPv4 address but --local 2001:db8::1 is IPv6: one address family per network",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\n\
                 fdb=[{mac=\"02:00:00:00:00:01\",remote=\"2001:db8::2\"}]\n",
                "static entry 02:00:00:00:00:01: 2001:db8::2 is an IPv6 address but --local 192.0.2.1 is IPv4",
            ),
            (
                "local = \"2001:db8::1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\ndev=\"t\"\n",
                "runs over an IPv4 underlay",
            ),
            (
                "local = \"2001:db8::1\"\nmode = \"l3\"\nencap = \"ipip\"\n\
                 store = \"etcd=http://192.0.2.10:2379\"\n[[network]]\ndev=\"t\"\n",
                "--encap ipip runs over an IPv4 underlay",
            ),
            (
                "local = \"ff02::1\"\n[[network]]\ndev=\"v\"\nvni=1\n",
                "cannot be a tunnel endpoint",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\npeers=[\"192.0.2.2\",\"192.0.2.2\"]\n",
                "twice",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"a\"\nvni=1\n[[network]]\ndev=\"b\"\nvni=1\n",
                "VNI 1",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"a\"\nvni=1\n[[network]]\ndev=\"a\"\nvni=2\n",
                "device a",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nfdb=[{mac=\"01:00:5e:00:00:01\",remote=\"192.0.2.2\"}]\n",
                "unicast",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nfdb=[{mac=\"02:00:00:00:00:01\",remote=\"192.0.2.2\",x=1}]\n",
                "unknown field",
            ),
            (
                "local = \"192.0.2.1\"\nthreads = 0\n[[network]]\ndev=\"v\"\nvni=1\n",
                "thread",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nneigh=[{ip=\"10.0.0.1\",mac=\"ff:ff:ff:ff:ff:ff\"}]\n",
                "unicast",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nneigh=[{ip=\"224.0.0.1\",mac=\"02:00:00:00:00:01\"}]\n",
                "neighbour",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\narp_suppress=true\nneigh=[{ip=\"10.0.0.1\",mac=\"02:00:00:00:00:01\"},{ip=\"10.0.0.1\",mac=\"02:00:00:00:00:02\"}]\n",
                "twice",
            ),
            (
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nneigh=[{ip=\"10.0.0.1\"}]\n",
                "mac",
            ),
            (
                "local = \"192.0.2.1\"\nthreads = 65\n[[network]]\ndev=\"v\"\nvni=1\n",
                "thread",
            ),
            ("local = ", "line 1"),
        ];
        for (text, want) in cases {
            let e = toml_err(text);
            assert!(e.contains(want), "{text:?}: got {e:?}, wanted {want:?}");
            assert!(!e.contains('\n'), "{text:?}: multi-line error {e:?}");
        }
    }

    /// The outer-header keys of a `[[network]]`, each network its own; IPIP refuses the UDP ones.
    #[test]
    fn outer_policy_keys() {
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\nttl = \"inherit\"\n\
             tos = 0x28\ndf = \"unset\"\nsrcport = \"5000-5010\"\nudp_csum = true\n\
             [[network]]\ndev = \"w\"\nvni = 2\nttl = 9\ntos = \"inherit\"\nudp_csum = \"off\"\n\
             udp6_zero_csum_rx = \"on\"\nport = 8472\n\
             [[network]]\ndev = \"x\"\nvni = 3\n",
        )
        .unwrap();
        let o = c.networks[0].outer;
        assert_eq!(o.ttl, Some(encap::Ttl::Inherit));
        assert_eq!(o.tos, Some(encap::Dscp::Fixed(10)));
        assert_eq!(o.df, Some(encap::Df::Unset));
        assert_eq!(o.srcport, encap::PortRange::new(5000, 5010).ok());
        assert_eq!(o.udp_csum, Some(true));
        let o = c.networks[1].outer;
        assert_eq!(o.ttl, Some(encap::Ttl::Fixed(9)));
        assert_eq!(o.tos, Some(encap::Dscp::Inherit));
        assert_eq!(o.udp_csum, Some(false));
        assert_eq!(o.udp6_zero_csum_rx, Some(true));
        assert_eq!(c.networks[2].outer, Outer::default());
        // Only the port of the network that asks accepts zero UDP checksums over IPv6.
        assert_eq!(
            (c.zero_csum6_rx(8472), c.zero_csum6_rx(4789)),
            (true, false)
        );
        let ipip =
            "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\ndev = \"t\"\n";
        let c =
            DaemonConfig::from_toml(&format!("{ipip}ttl = 7\ndf = \"set\"\ntos = 184\n")).unwrap();
        let i = c.networks[0].outer.ipip(c.local_v4());
        assert_eq!(
            (i.ttl, i.dscp, i.df),
            (encap::Ttl::Fixed(7), encap::Dscp::Fixed(46), encap::Df::Set)
        );
        for (extra, want) in [
            (
                "srcport = \"1-2\"",
                "dev t: srcport is for VXLAN: IPIP has no UDP header",
            ),
            ("udp_csum = false", "dev t: udp_csum is for VXLAN"),
        ] {
            let e = toml_err(&format!("{ipip}{extra}\n"));
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    /// `port` in a `[[network]]` (VXLAN): its own UDP port, kept only where it differs from
    /// the daemon's; IPIP refuses it like the other VXLAN-only keys.
    #[test]
    fn per_network_port() {
        let file = |top: &str| {
            format!(
                "local = \"192.0.2.1\"\n{top}[[network]]\ndev = \"a\"\nvni = 42\n\
                 [[network]]\ndev = \"b\"\nvni = 43\nport = 8472\n\
                 [[network]]\ndev = \"c\"\nvni = 44\nport = 4789\n"
            )
        };
        let c = DaemonConfig::from_toml(&file("")).unwrap();
        let ports: Vec<u16> = c.networks.iter().map(|n| c.port_of(n)).collect();
        assert_eq!(ports, [4789, 8472, 4789]);
        assert_eq!(c.networks[2].port, None, "the daemon's port: not kept");
        assert_eq!(c.ports(), [4789, 8472]);
        let shown = c.to_toml().unwrap();
        assert_eq!(shown.matches("port = ").count(), 2, "{shown}");
        assert!(shown.contains("vni = 43\nport = 8472\n"), "{shown}");
        assert_eq!(DaemonConfig::from_toml(&shown), Ok(c));
        // With another top-level port, the networks without their own follow it.
        let c = DaemonConfig::from_toml(&file("port = 8472\n")).unwrap();
        let ports: Vec<u16> = c.networks.iter().map(|n| c.port_of(n)).collect();
        assert_eq!(ports, [8472, 8472, 4789]);
        assert_eq!(c.ports(), [8472, 4789]);
        // L3 VXLAN: its one network's port is the one it uses.
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"t\"\nvni = 1\n\
             address = \"10.0.0.1/32\"\nport = 8472\n",
        )
        .unwrap();
        assert_eq!((c.port_of(&c.networks[0]), c.ports()), (8472, vec![8472]));
        let ipip = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
                    dev = \"t\"\n";
        for port in ["4789", "8472"] {
            let e = toml_err(&format!("{ipip}port = {port}\n"));
            assert_eq!(e, "dev t: port is for VXLAN: IPIP has no UDP header");
        }
        let net = "local = \"192.0.2.1\"\n[[network]]\ndev = \"v\"\nvni = 1\n";
        for (bad, want) in [
            ("0", "network #1: port 0 is not in 1..=65535"),
            ("65536", "network #1: port 65536 is not in 1..=65535"),
            ("-1", "line 5"),
            ("\"4789\"", "line 5"),
        ] {
            let e = toml_err(&format!("{net}port = {bad}\n"));
            assert!(e.starts_with(want), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn ipip_file() {
        let c = DaemonConfig::from_toml(
            "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\ndev = \"tunl9\"\n\
             routes = [\"10.0.1.0/26=192.0.2.2\", \"10.0.2.0/26=192.0.2.3\"]\n",
        )
        .unwrap();
        assert_eq!(c.tunnel, Tunnel::L3Ipip);
        assert_eq!(c.networks[0].routes.len(), 2);
        assert_eq!(
            c.networks[0].routes[1].to_string(),
            "10.0.2.0/26 via 192.0.2.3"
        );
        let head = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n";
        for (body, want) in [
            ("[[network]]\ndev=\"t\"\nvni=3\n", "vni is not used"),
            ("port=4789\n[[network]]\ndev=\"t\"\n", "port is not used"),
            ("[[network]]\ndev=\"t\"\npeers=[\"192.0.2.2\"]\n", "--peer"),
            (
                "[[network]]\ndev=\"t\"\nroutes=[\"10.0.1.0/26\"]\n",
                "CIDR=IP",
            ),
            (
                "[[network]]\ndev=\"t\"\nroutes=[\"10.0.1.0/26=192.0.2.1\"]\n",
                "own",
            ),
            (
                "[[network]]\ndev=\"a\"\n[[network]]\ndev=\"b\"\n",
                "exactly one",
            ),
        ] {
            let e = toml_err(&format!("{head}{body}"));
            assert!(e.contains(want), "{body:?}: {e}");
            assert!(!e.contains('\n'));
        }
        assert!(toml_err("local = \"192.0.2.1\"\nmode = \"l5\"\n").contains("expected l2 or l3"));
        assert!(
            toml_err("local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\n").contains("vni is required")
        );
        assert!(
            toml_err(
                "local = \"192.0.2.1\"\n[[network]]\ndev=\"v\"\nvni=1\nroutes=[\"10.0.0.0/8=192.0.2.2\"]\n"
            )
            .contains("need --mode l3")
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_vni("16777215").unwrap().get(), 16_777_215);
        assert!(parse_vni("16777216").is_err());
        assert!(parse_vni("99999999999999999999").is_err());
        assert!(parse_vni("x").is_err());
        assert_eq!(parse_port("4789"), Ok(4789));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_mtu("67").is_err());
        assert_eq!(parse_mtu("1450"), Ok(1450));
        assert!(parse_ageing("0").is_err());
        assert!(parse_max_fdb("0").is_err());
        assert!(parse_threads("65").is_err());
        assert!(parse_vtep_ip("0.0.0.0").is_err());
        assert!(parse_vtep_ip("255.255.255.255").is_err());
        assert!(parse_vtep_ip("239.1.1.1").is_err());
        assert!(parse_vtep_ip("192.0.2.256").is_err());
        assert_eq!(
            parse_vtep_ip("127.0.0.1"),
            Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "--local may be lo"
        );
        assert_eq!(
            parse_remote_ip("127.0.0.1").unwrap_err(),
            "127.0.0.1 is a loopback address: a remote VTEP must be reachable over the underlay"
        );
        for (bad, why) in [
            ("127.3.4.5", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("239.1.1.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.256", "not an IPv4 or IPv6 address"),
            ("::1", "loopback"),
            ("ff02::1", "multicast"),
            ("::", "unspecified"),
        ] {
            let e = parse_remote_ip(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(
            parse_remote_ip("169.254.1.2").is_ok(),
            "link-local is on the underlay"
        );
        assert!(
            parse_remote_ip("2001:db8::2").is_ok(),
            "IPv6 remotes are VTEPs too"
        );
        assert!(parse_remote_ip("192.0.2.2").is_ok());
        assert!(parse_unicast_mac("ff:ff:ff:ff:ff:ff").is_err());
        assert!(parse_unicast_mac("00:00:00:00:00:00").is_err());
        assert!(parse_unicast_mac("02:00:00:00:00").is_err());
        assert!(parse_unicast_mac("02:00:00:00:00:01").is_ok());
        assert!("10.0.0.1/0".parse::<Ipv4Cidr>().is_err());
        assert!("0.0.0.0/8".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.1/x".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.1/32".parse::<Ipv4Cidr>().is_ok());
        let n = parse_neigh("10.244.1.0=02:00:00:00:00:01").unwrap();
        assert_eq!(n.ip, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(n.mac.to_string(), "02:00:00:00:00:01");
        for bad in [
            "10.244.1.0",
            "10.244.1.0=",
            "=02:00:00:00:00:01",
            "10.244.1=02:00:00:00:00:01",
            "0.0.0.0=02:00:00:00:00:01",
            "255.255.255.255=02:00:00:00:00:01",
            "10.244.1.0=01:00:5e:00:00:01",
            "10.244.1.0=02:00:00:00:00",
            "::=02:00:00:00:00:01",
            "::1=02:00:00:00:00:01",
            "ff02::1=02:00:00:00:00:01",
            "::ffff:10.0.0.1=02:00:00:00:00:01",
        ] {
            assert!(parse_neigh(bad).is_err(), "{bad}");
        }
        let n = parse_neigh("fd00::1:10=02:00:00:00:00:01").unwrap();
        assert_eq!(n.ip, "fd00::1:10".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn device_names() {
        assert!(parse_dev_name("vtep0").is_ok());
        assert!(parse_dev_name("123456789012345").is_ok());
        for bad in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\u{7}",
        ] {
            assert!(parse_dev_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn control_paths() {
        assert!(parse_control_path("/run/vtepd/x.sock").is_ok());
        assert!(parse_control_path("").is_err());
        assert!(parse_control_path("/tmp/").is_err());
        assert!(parse_control_path(&format!("/{}", "a".repeat(107))).is_err());
    }

    #[test]
    fn stable_mac_is_stable_local_unicast_and_distinct() {
        let l = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let v = Vni::new(42).unwrap();
        let a = stable_mac("vtep0", v, l);
        assert_eq!(a, stable_mac("vtep0", v, l));
        assert!(a.is_unicast());
        assert_eq!(a.0[0] & 0x02, 0x02, "locally administered");
        // Pinned: a change here changes every deployed device's MAC.
        assert_eq!(a.to_string(), "62:eb:70:0b:a2:ce");
        assert_ne!(a, stable_mac("vtep1", v, l));
        assert_ne!(a, stable_mac("vtep0", Vni::new(43).unwrap(), l));
        assert_ne!(
            a,
            stable_mac("vtep0", v, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))
        );
    }
}
