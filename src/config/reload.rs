//! What a reload changes: the difference between the running configuration and the file read
//! again ([`plan`]), worked out whole before anything is applied. Pure: the daemon applies the
//! steps (`daemon::reload`).
//!
//! Applied while running: in L2 mode, networks added and removed (their devices created and
//! removed); for the networks that stay, flood lists, static FDB entries, static neighbours,
//! routes (L3), and each network's learning, ageing, learned-entry cap, ARP suppression,
//! MAC-move dampening and storm limits; `allow_any_peer` (VXLAN). Everything else needs a
//! restart and refuses the whole reload, naming each setting: `local`, `mode`, `encap`,
//! `threads`, `busy_poll`, `control`, `log_format`, `metrics`, `allow_any_peer` with IPIP, a network added or removed in
//! the L3 modes, a network renamed (its `dev`, or a device moved to another VNI), a network's
//! `address`, `mtu` and outer-header policy (`ttl`, `tos`, `df`, `srcport`, `udp_csum`: every
//! worker keeps header templates built from it; `udp6_zero_csum_rx`), and the UDP ports
//! (VXLAN): a change of the port a network that stays uses (its own `port`, or the top-level
//! one it follows), and a network added on a port no running network uses or whose
//! `udp6_zero_csum_rx` would change the port's (the sockets are opened and set at start). A
//! top-level `port` no network follows is taken as it is.
//!
//! The file is the truth: the running configuration compared against it includes the changes
//! made through the control socket, so a peer, entry, neighbour or route added there and not in
//! the file is removed, and one removed there and still in the file comes back.

use super::{DaemonConfig, NetConfig, Tunnel};
use crate::core::network::NetSettings;
use crate::core::route::Route;
use encap::{MacAddr, Vni};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// One change a reload makes, applied in the order of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A network added (L2): its device created, its place made in the core and the workers.
    NetAdd(Box<NetConfig>),
    /// A network removed (L2): out of the core and the workers, its device removed.
    NetDel {
        /// Its VNI.
        vni: Vni,
        /// Its device.
        dev: String,
    },
    /// Accept tunnel traffic from any source (or not).
    AllowAnyPeer(bool),
    /// A network's new flood list (`added` and `removed` say what differs).
    Peers {
        /// Network.
        vni: Vni,
        /// The whole new list, in the file's order.
        list: Vec<IpAddr>,
        /// Peers not in the running list.
        added: Vec<IpAddr>,
        /// Running peers not in the file.
        removed: Vec<IpAddr>,
    },
    /// A network's new settings, with one line per setting that changed.
    Settings {
        /// Network.
        vni: Vni,
        /// The new settings.
        to: NetSettings,
        /// What changed, one line each.
        what: Vec<String>,
    },
    /// A static FDB entry removed.
    FdbDel {
        /// Network.
        vni: Vni,
        /// Its MAC.
        mac: MacAddr,
        /// Its remote.
        remote: IpAddr,
    },
    /// A static FDB entry added, or pointed elsewhere (`was`).
    FdbSet {
        /// Network.
        vni: Vni,
        /// Its MAC.
        mac: MacAddr,
        /// Its remote.
        remote: IpAddr,
        /// The remote it had.
        was: Option<IpAddr>,
    },
    /// A static neighbour removed.
    NeighDel {
        /// Network.
        vni: Vni,
        /// Its address.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// A static neighbour added, or bound to another MAC (`was`).
    NeighSet {
        /// Network.
        vni: Vni,
        /// Its address.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
        /// The MAC it had.
        was: Option<MacAddr>,
    },
    /// A route removed (L3).
    RouteDel(Route),
    /// A route added, or sent through another next hop (`was`).
    RouteSet {
        /// The route.
        route: Route,
        /// The next hop it had.
        was: Option<std::net::IpAddr>,
    },
}

impl Step {
    /// What the step does, one line per change (a settings step may change several).
    pub fn lines(&self) -> Vec<String> {
        let on = |b: bool| if b { "on" } else { "off" };
        match self {
            Step::NetAdd(n) => vec![format!("network VNI {} (dev {}) added", n.vni, n.dev)],
            Step::NetDel { vni, dev } => vec![format!("network VNI {vni} (dev {dev}) removed")],
            Step::AllowAnyPeer(b) => vec![format!("allow_any_peer {} -> {}", on(!b), on(*b))],
            Step::Peers {
                vni,
                added,
                removed,
                ..
            } => added
                .iter()
                .map(|p| format!("VNI {vni}: peer {p} added"))
                .chain(
                    removed
                        .iter()
                        .map(|p| format!("VNI {vni}: peer {p} removed")),
                )
                .collect(),
            Step::Settings { vni, what, .. } => {
                what.iter().map(|w| format!("VNI {vni}: {w}")).collect()
            }
            Step::FdbDel { vni, mac, remote } => {
                vec![format!(
                    "VNI {vni}: static FDB entry {mac} -> {remote} removed"
                )]
            }
            Step::FdbSet {
                vni,
                mac,
                remote,
                was: None,
            } => vec![format!(
                "VNI {vni}: static FDB entry {mac} -> {remote} added"
            )],
            Step::FdbSet {
                vni,
                mac,
                remote,
                was: Some(w),
            } => vec![format!(
                "VNI {vni}: static FDB entry {mac} -> {remote} (was {w})"
            )],
            Step::NeighDel { vni, ip, mac } => {
                vec![format!("VNI {vni}: neighbour {ip} = {mac} removed")]
            }
            Step::NeighSet {
                vni,
                ip,
                mac,
                was: None,
            } => vec![format!("VNI {vni}: neighbour {ip} = {mac} added")],
            Step::NeighSet {
                vni,
                ip,
                mac,
                was: Some(w),
            } => vec![format!("VNI {vni}: neighbour {ip} = {mac} (was {w})")],
            Step::RouteDel(r) => vec![format!("route {} via {} removed", r.prefix, r.via)],
            Step::RouteSet { route, was: None } => {
                vec![format!("route {} via {} added", route.prefix, route.via)]
            }
            Step::RouteSet {
                route,
                was: Some(w),
            } => vec![format!(
                "route {} via {} (was via {w})",
                route.prefix, route.via
            )],
        }
    }
}

/// Why a reload was refused: every setting that needs a restart (or the reason the file was
/// not read), shown on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<String>);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("; "))
    }
}

/// The steps that turn `running` into `new`, in the order to apply them: networks added (with
/// their static entries and neighbours) and routes first, since only they can fail (a device,
/// the kernel) and they can be undone; then networks removed (which cannot be undone: learned
/// state goes); then the rest. Or every reason the change cannot be made without a restart.
pub fn plan(running: &DaemonConfig, new: &DaemonConfig) -> Result<Vec<Step>, Refused> {
    let mut refused = Vec::new();
    let mut restart = |what: String| refused.push(format!("{what}: needs a restart"));
    let tunnel_name = |t: Tunnel| match t {
        Tunnel::L2Vxlan => "mode l2 (VXLAN)",
        Tunnel::L3Vxlan => "mode l3, encap vxlan",
        Tunnel::L3Ipip => "mode l3, encap ipip",
    };
    if running.local != new.local {
        restart(format!("local {} -> {}", running.local, new.local));
    }
    if running.tunnel != new.tunnel {
        restart(format!(
            "{} -> {}",
            tunnel_name(running.tunnel),
            tunnel_name(new.tunnel)
        ));
    }
    if running.threads != new.threads {
        restart(format!("threads {} -> {}", running.threads, new.threads));
    }
    if running.busy_poll != new.busy_poll {
        restart(format!(
            "busy_poll {} -> {}",
            running.busy_poll, new.busy_poll
        ));
    }
    if running.control != new.control {
        restart(format!(
            "control {} -> {}",
            running.control.display(),
            new.control.display()
        ));
    }
    if running.log_format != new.log_format {
        restart(format!(
            "log_format {:?} -> {:?}",
            running.log_format, new.log_format
        ));
    }
    if running.metrics != new.metrics {
        let show = |m: Option<std::net::SocketAddr>| m.map_or("none".into(), |a| a.to_string());
        restart(format!(
            "metrics {} -> {}",
            show(running.metrics),
            show(new.metrics)
        ));
    }
    if running.store != new.store {
        restart("store, store_prefix or store_ttl changed".into());
    }
    let mut steps = Vec::new();
    if running.allow_any_peer != new.allow_any_peer {
        if running.tunnel.is_vxlan() {
            steps.push(Step::AllowAnyPeer(new.allow_any_peer));
        } else {
            restart(format!(
                "allow_any_peer {} -> {} with IPIP",
                running.allow_any_peer, new.allow_any_peer
            ));
        }
    }
    let by_vni = |c: &DaemonConfig| -> BTreeMap<Vni, usize> {
        c.networks
            .iter()
            .enumerate()
            .map(|(i, n)| (n.vni, i))
            .collect()
    };
    let (old_nets, new_nets) = (by_vni(running), by_vni(new));
    let label = |n: &NetConfig| {
        if running.tunnel.is_vxlan() {
            format!("network VNI {} (dev {})", n.vni, n.dev)
        } else {
            format!("network dev {}", n.dev)
        }
    };
    // Networks come and go in L2 mode only (one TAP device each); a device name that moves
    // to another VNI is a rename.
    let l2 = running.tunnel == Tunnel::L2Vxlan && new.tunnel == Tunnel::L2Vxlan;
    let mut first = Vec::new();
    let mut removed = Vec::new();
    for (vni, &i) in &old_nets {
        if !new_nets.contains_key(vni) {
            let o = &running.networks[i];
            if !l2 {
                restart(format!("{} removed", label(o)));
            } else if let Some(n) = new.networks.iter().find(|n| n.dev == o.dev) {
                restart(format!(
                    "dev {}: VNI {} -> {} (remove the network and add it back in two reloads)",
                    o.dev, o.vni, n.vni
                ));
            } else {
                removed.push(Step::NetDel {
                    vni: *vni,
                    dev: o.dev.clone(),
                });
            }
        }
    }
    for (vni, &i) in &new_nets {
        if !old_nets.contains_key(vni) {
            let n = &new.networks[i];
            let port = new.port_of(n);
            if !l2 {
                restart(format!("{} added", label(n)));
            } else if running.zero_csum6_rx(port) != new.zero_csum6_rx(port) {
                restart(format!(
                    "{} added: port {port} would change whether it accepts zero UDP checksums \
                     over IPv6 (udp6_zero_csum_rx; a port's sockets are set at start)",
                    label(n)
                ));
            } else if !running.ports().contains(&port) {
                restart(format!(
                    "{} added on port {port}, which no running network uses (a port's sockets \
                     are opened at start)",
                    label(n)
                ));
            } else if !running.networks.iter().any(|o| o.dev == n.dev) {
                first.push(Step::NetAdd(Box::new(n.clone())));
                // Created with its peers and settings; its static entries and neighbours next.
                let bare = NetConfig {
                    fdb: Vec::new(),
                    neigh: Vec::new(),
                    ..n.clone()
                };
                network_steps(*vni, &bare, n, &mut first);
            }
        }
    }
    let mut route_steps = Vec::new();
    for (vni, &i) in &old_nets {
        let Some(&j) = new_nets.get(vni) else {
            continue;
        };
        let (o, n) = (&running.networks[i], &new.networks[j]);
        let at = label(o);
        if o.dev != n.dev {
            restart(format!("{at}: dev {} -> {}", o.dev, n.dev));
        }
        if o.address != n.address {
            let show = |a: Option<super::Ipv4Cidr>| a.map_or("none".into(), |a| a.to_string());
            restart(format!(
                "{at}: address {} -> {}",
                show(o.address),
                show(n.address)
            ));
        }
        if o.address6 != n.address6 {
            let show = |a: Option<super::Ipv6Cidr>| a.map_or("none".into(), |a| a.to_string());
            restart(format!(
                "{at}: address6 {} -> {}",
                show(o.address6),
                show(n.address6)
            ));
        }
        if o.announce != n.announce {
            restart(format!("{at}: announce {} -> {}", o.announce, n.announce));
        }
        if o.advertise != n.advertise {
            restart(format!(
                "{at}: advertise (the prefixes registered in the store)"
            ));
        }
        if o.mtu != n.mtu {
            let show = |m: Option<u16>| m.map_or("default".into(), |m| m.to_string());
            restart(format!("{at}: mtu {} -> {}", show(o.mtu), show(n.mtu)));
        }
        if o.outer != n.outer {
            restart(format!(
                "{at}: outer-header policy (ttl, tos, df, srcport, udp_csum, udp6_zero_csum_rx, \
                 remcsum_tx, remcsum_rx)"
            ));
        }
        let (op, np) = (running.port_of(o), new.port_of(n));
        if running.tunnel.is_vxlan() && op != np {
            restart(format!("{at}: port {op} -> {np}"));
        }
        network_steps(*vni, o, n, &mut steps);
        route_plan(o, n, &mut route_steps);
    }
    if !refused.is_empty() {
        return Err(Refused(refused));
    }
    first.append(&mut route_steps);
    first.append(&mut removed);
    first.append(&mut steps);
    Ok(first)
}

/// The settings lines of a network whose settings went from `o` to `n`.
fn settings_lines(o: &NetSettings, n: &NetSettings) -> Vec<String> {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut what = Vec::new();
    if o.learning != n.learning {
        what.push(format!("learning {} -> {}", on(o.learning), on(n.learning)));
    }
    if o.ageing != n.ageing {
        what.push(format!(
            "ageing {}s -> {}s",
            o.ageing.as_secs(),
            n.ageing.as_secs()
        ));
    }
    if o.max_learned != n.max_learned {
        what.push(format!("max_fdb {} -> {}", o.max_learned, n.max_learned));
    }
    if o.arp_suppress != n.arp_suppress {
        what.push(format!(
            "arp_suppress {} -> {}",
            on(o.arp_suppress),
            on(n.arp_suppress)
        ));
    }
    if o.mac_move != n.mac_move {
        let m = |l: &crate::core::dampening::MoveLimit| {
            format!("moves={},window={},hold={}", l.moves, l.window, l.hold)
        };
        what.push(format!("mac_move {} -> {}", m(&o.mac_move), m(&n.mac_move)));
    }
    if o.storm != n.storm {
        let s = |l: &crate::core::storm::StormLimits| {
            let v = |x: Option<u32>| x.map_or("unlimited".into(), |x| x.to_string());
            format!(
                "broadcast={},unknown_unicast={},multicast={}",
                v(l.broadcast),
                v(l.unknown_unicast),
                v(l.multicast)
            )
        };
        what.push(format!("storm {} -> {}", s(&o.storm), s(&n.storm)));
    }
    what
}

/// The steps of one network that stays: settings, flood list, static entries, neighbours.
fn network_steps(vni: Vni, o: &NetConfig, n: &NetConfig, steps: &mut Vec<Step>) {
    let (os, ns) = (o.settings(), n.settings());
    let what = settings_lines(&os, &ns);
    if !what.is_empty() {
        steps.push(Step::Settings { vni, to: ns, what });
    }
    let old: BTreeSet<IpAddr> = o.peers.iter().copied().collect();
    let new: BTreeSet<IpAddr> = n.peers.iter().copied().collect();
    if old != new {
        steps.push(Step::Peers {
            vni,
            list: n.peers.clone(),
            added: n
                .peers
                .iter()
                .filter(|p| !old.contains(p))
                .copied()
                .collect(),
            removed: o
                .peers
                .iter()
                .filter(|p| !new.contains(p))
                .copied()
                .collect(),
        });
    }
    let old: BTreeMap<MacAddr, IpAddr> = o.fdb.iter().map(|e| (e.mac, e.remote)).collect();
    let new: BTreeMap<MacAddr, IpAddr> = n.fdb.iter().map(|e| (e.mac, e.remote)).collect();
    for (&mac, &remote) in &old {
        if !new.contains_key(&mac) {
            steps.push(Step::FdbDel { vni, mac, remote });
        }
    }
    for (&mac, &remote) in &new {
        let was = old.get(&mac).copied();
        if was != Some(remote) {
            steps.push(Step::FdbSet {
                vni,
                mac,
                remote,
                was,
            });
        }
    }
    let old: BTreeMap<IpAddr, MacAddr> = o.neigh.iter().map(|e| (e.ip, e.mac)).collect();
    let new: BTreeMap<IpAddr, MacAddr> = n.neigh.iter().map(|e| (e.ip, e.mac)).collect();
    for (&ip, &mac) in &old {
        if !new.contains_key(&ip) {
            steps.push(Step::NeighDel { vni, ip, mac });
        }
    }
    for (&ip, &mac) in &new {
        let was = old.get(&ip).copied();
        if was != Some(mac) {
            steps.push(Step::NeighSet { vni, ip, mac, was });
        }
    }
}

/// The route steps of a network: removals first (a route replaced by a shorter or longer one
/// never overlaps itself), then additions and changes.
fn route_plan(o: &NetConfig, n: &NetConfig, steps: &mut Vec<Step>) {
    let old: BTreeMap<_, _> = o.routes.iter().map(|r| (r.prefix, r.via)).collect();
    let new: BTreeMap<_, _> = n.routes.iter().map(|r| (r.prefix, r.via)).collect();
    for (&prefix, &via) in &old {
        if !new.contains_key(&prefix) {
            steps.push(Step::RouteDel(Route { prefix, via }));
        }
    }
    for (&prefix, &via) in &new {
        let was = old.get(&prefix).copied();
        if was != Some(via) {
            steps.push(Step::RouteSet {
                route: Route { prefix, via },
                was,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "local = \"192.0.2.1\"\nthreads = 2\ncontrol = \"/tmp/r.sock\"\n\
        [[network]]\ndev = \"v42\"\nvni = 42\npeers = [\"192.0.2.2\", \"192.0.2.3\"]\n\
        fdb = [{ mac = \"02:00:00:00:00:09\", remote = \"192.0.2.9\" }]\n\
        [[network]]\ndev = \"v43\"\nvni = 43\n";

    fn cfg(text: &str) -> DaemonConfig {
        DaemonConfig::from_toml(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().flat_map(Step::lines).collect()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        assert_eq!(plan(&cfg(BASE), &cfg(BASE)), Ok(Vec::new()));
    }

    #[test]
    fn peers_entries_and_settings_are_applied() {
        let new = BASE
            .replace("\"192.0.2.3\"", "\"192.0.2.4\"")
            .replace(
                "192.0.2.9\" }]",
                "192.0.2.8\" },\n{ mac = \"02:00:00:00:00:0a\", remote = \"192.0.2.9\" }]",
            )
            .replace(
                "vni = 43\n",
                "vni = 43\nlearning = false\nageing = 60\nmax_fdb = 10\n\
                 mac_move = { moves = 0 }\nstorm = { broadcast = 100 }\narp_suppress = true\n\
                 neigh = [{ ip = \"10.0.0.9\", mac = \"02:00:00:00:00:0b\" }]\n",
            );
        let steps = plan(&cfg(BASE), &cfg(&new)).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "VNI 42: peer 192.0.2.4 added",
                "VNI 42: peer 192.0.2.3 removed",
                "VNI 42: static FDB entry 02:00:00:00:00:09 -> 192.0.2.8 (was 192.0.2.9)",
                "VNI 42: static FDB entry 02:00:00:00:00:0a -> 192.0.2.9 added",
                "VNI 43: learning on -> off",
                "VNI 43: ageing 300s -> 60s",
                "VNI 43: max_fdb 65536 -> 10",
                "VNI 43: arp_suppress off -> on",
                "VNI 43: mac_move moves=5,window=180,hold=180 -> moves=0,window=180,hold=180",
                "VNI 43: storm broadcast=unlimited,unknown_unicast=unlimited,multicast=unlimited \
                 -> broadcast=100,unknown_unicast=unlimited,multicast=unlimited",
                "VNI 43: neighbour 10.0.0.9 = 02:00:00:00:00:0b added",
            ]
        );
        let Some(Step::Peers { list, .. }) = steps.first() else {
            panic!("{steps:?}");
        };
        assert_eq!(list.len(), 2);
        // And back: what was added goes.
        let back = lines(&plan(&cfg(&new), &cfg(BASE)).unwrap());
        assert!(
            back.contains(
                &"VNI 42: static FDB entry 02:00:00:00:00:0a -> 192.0.2.9 removed".into()
            ),
            "{back:?}"
        );
        assert!(back.contains(&"VNI 43: neighbour 10.0.0.9 = 02:00:00:00:00:0b removed".into()));
    }

    #[test]
    fn what_needs_a_restart_refuses_everything_and_names_each_setting() {
        let new = BASE
            .replace("192.0.2.1", "192.0.2.100")
            .replace(
                "threads = 2",
                "threads = 3\nport = 8472\nmetrics = \"127.0.0.1:9570\"\nbusy_poll = true",
            )
            .replace("/tmp/r.sock", "/tmp/s.sock")
            .replace("dev = \"v43\"", "dev = \"w43\"\nmtu = 1400\nttl = 9")
            .replace("peers = [\"192.0.2.2\", \"192.0.2.3\"]", "")
            .replace(
                "[[network]]\ndev = \"v42\"\nvni = 42",
                "[[network]]\ndev = \"v44\"\nvni = 44",
            );
        let e = plan(&cfg(BASE), &cfg(&new)).unwrap_err();
        let text = e.to_string();
        for want in [
            "local 192.0.2.1 -> 192.0.2.100: needs a restart",
            "port 4789 -> 8472",
            "threads 2 -> 3",
            "busy_poll false -> true",
            "control /tmp/r.sock -> /tmp/s.sock",
            "metrics none -> 127.0.0.1:9570",
            "network VNI 43 (dev v43): dev v43 -> w43",
            "network VNI 43 (dev v43): mtu default -> 1400",
            "network VNI 43 (dev v43): outer-header policy",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(!text.contains('\n'));
        let l3 = "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"t\"\nvni = 1\n\
                  address = \"10.0.0.1/32\"\n";
        let e = plan(&cfg(l3), &cfg(&l3.replace("10.0.0.1/32", "10.0.0.2/32"))).unwrap_err();
        assert!(
            e.to_string().contains("address 10.0.0.1/32 -> 10.0.0.2/32"),
            "{e}"
        );
        let e = plan(&cfg(BASE), &cfg(l3)).unwrap_err();
        assert!(
            e.to_string()
                .contains("mode l2 (VXLAN) -> mode l3, encap vxlan"),
            "{e}"
        );
        let ipip = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
                    dev = \"t\"\n";
        let six = format!("{ipip}address6 = \"fd00:1::40/128\"\n");
        let e = plan(&cfg(ipip), &cfg(&six)).unwrap_err();
        assert!(
            e.to_string().contains("address6 none -> fd00:1::40/128"),
            "{e}"
        );
    }

    /// A network's UDP port is fixed while it runs, and a network is added only on a port the
    /// daemon already listens on; one on a port it listens on is added as any other.
    #[test]
    fn ports_that_need_a_restart_are_refused() {
        let running = cfg(&BASE.replace("vni = 43\n", "vni = 43\nport = 8472\n"));
        let refused = |new: &str| plan(&running, &cfg(new)).unwrap_err().to_string();
        let e = refused(BASE);
        assert_eq!(
            e, "network VNI 43 (dev v43): port 8472 -> 4789: needs a restart",
            "its own port dropped"
        );
        let e = refused(&BASE.replace("threads = 2", "threads = 2\nport = 4790"));
        assert!(
            e.starts_with("network VNI 42 (dev v42): port 4789 -> 4790: needs a restart; "),
            "the top-level port its network follows: {e}"
        );
        assert!(
            e.contains("network VNI 43 (dev v43): port 8472 -> 4790"),
            "{e}"
        );
        let add = |port: u16| {
            format!(
                "{}[[network]]\ndev = \"v44\"\nvni = 44\nport = {port}\n",
                BASE.replace("vni = 43\n", "vni = 43\nport = 8472\n")
            )
        };
        assert_eq!(
            refused(&add(4790)),
            "network VNI 44 (dev v44) added on port 4790, which no running network uses (a \
             port's sockets are opened at start): needs a restart"
        );
        assert_eq!(
            refused(&format!("{}udp6_zero_csum_rx = true\n", add(8472))),
            "network VNI 44 (dev v44) added: port 8472 would change whether it accepts zero UDP \
             checksums over IPv6 (udp6_zero_csum_rx; a port's sockets are set at start): needs a \
             restart"
        );
        for port in [8472, 4789] {
            let new = cfg(&add(port));
            let steps = plan(&running, &new).unwrap();
            assert!(
                matches!(&steps[..], [Step::NetAdd(n)] if new.port_of(n) == port),
                "{steps:?}"
            );
        }
        // A top-level port no network follows changes nothing that runs.
        let own = |top: &str| {
            cfg(&format!(
                "local = \"192.0.2.1\"\n{top}[[network]]\ndev = \"a\"\nvni = 1\nport = 8472\n"
            ))
        };
        assert_eq!(plan(&own(""), &own("port = 4790\n")), Ok(Vec::new()));
    }

    #[test]
    fn routes_are_removed_first_then_added_or_changed() {
        let ipip = |routes: &str| {
            cfg(&format!(
                "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
                 dev = \"t\"\nroutes = [{routes}]\n"
            ))
        };
        let old = ipip("\"10.0.1.0/26=192.0.2.2\", \"10.0.2.0/26=192.0.2.3\"");
        let new = ipip("\"10.0.2.0/26=192.0.2.4\", \"10.0.3.0/26=192.0.2.3\"");
        let steps = plan(&old, &new).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "route 10.0.1.0/26 via 192.0.2.2 removed",
                "route 10.0.2.0/26 via 192.0.2.4 (was via 192.0.2.3)",
                "route 10.0.3.0/26 via 192.0.2.3 added",
            ]
        );
        let mut any = new.clone();
        any.allow_any_peer = true;
        let e = plan(&new, &any).unwrap_err();
        assert!(
            e.to_string()
                .contains("allow_any_peer false -> true with IPIP"),
            "{e}"
        );
        let mut vx = cfg(BASE);
        vx.allow_any_peer = true;
        assert_eq!(plan(&cfg(BASE), &vx), Ok(vec![Step::AllowAnyPeer(true)]));
    }

    /// What `config show` writes is read back into an equal configuration, in every mode and
    /// with every key given.
    #[test]
    fn to_toml_round_trips() {
        let full = "local = \"192.0.2.1\"\nallow_any_peer = true\nthreads = 3\n\
            log_format = \"json\"\ncontrol = \"/tmp/x.sock\"\nport = 8472\n\
            metrics = \"[::1]:9570\"\n[[network]]\ndev = \"v42\"\nvni = 42\npeers = [\"192.0.2.3\", \"192.0.2.2\"]\n\
            address = \"10.42.0.1/24\"\nmtu = 1400\nlearning = false\nageing = 60\nmax_fdb = 100\n\
            fdb = [{ mac = \"02:00:00:00:00:09\", remote = \"192.0.2.9\" }]\narp_suppress = true\n\
            neigh = [{ ip = \"10.42.0.9\", mac = \"02:00:00:00:00:09\" }]\n\
            mac_move = { moves = 2, window = 10, hold = 20 }\nstorm = { multicast = 5 }\n\
            ttl = \"inherit\"\ntos = 0x28\ndf = \"unset\"\nsrcport = \"5000-5010\"\nudp_csum = true\n\
            [[network]]\ndev = \"v43\"\nvni = 43\nttl = 9\ntos = \"inherit\"\nport = 4789\n";
        let l3vx = "local = \"192.0.2.1\"\nmode = \"l3\"\n[[network]]\ndev = \"t\"\nvni = 7\n\
            address = \"10.244.0.0/32\"\nroutes = [\"10.244.1.0/24=10.244.1.0\"]\n\
            neigh = [{ ip = \"10.244.1.0\", mac = \"02:00:00:00:00:01\" }]\n";
        let ipip = "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\n\
            dev = \"t\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.0.1.0/26=192.0.2.2\"]\n\
            df = \"set\"\n";
        for text in [full, l3vx, ipip, BASE] {
            let c = cfg(text);
            let shown = c.to_toml().unwrap();
            let back = DaemonConfig::from_toml(&shown)
                .unwrap_or_else(|e| panic!("{shown}\nis refused: {e}"));
            assert_eq!(back, c, "{shown}");
            assert_eq!(back.to_toml().unwrap(), shown);
        }
    }
}
