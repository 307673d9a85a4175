//! Kernel routes onto vtepd's own device, through rtnetlink (synchronous, no async runtime):
//! `ip route replace CIDR dev IFINDEX [via IP onlink]` and `ip route del CIDR dev IFINDEX`,
//! done by vtepd itself so that a user needs no `ip route` commands.
//!
//! Messages are built and parsed by `netlink-packet-route` and sent on a `netlink-sys`
//! socket; every request asks for an acknowledgement and waits for it at most
//! [`ACK_TIMEOUT`] ([`exchange`], shared with [`super::link`]). [`KernelRoutes`] remembers what
//! it installed and removes it on drop.

use crate::core::route::{Route, RouteError, Routes};
use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::{debug, warn};

/// How long to wait for the kernel's answer to one request.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The interface index of `name` in our network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    getifaddrs::if_nametoindex(name)
}

/// A route's address as netlink carries it.
fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn route_message(prefix: IpNet, ifindex: u32, via: Option<IpAddr>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = prefix.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if via.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.attributes
        .push(RouteAttribute::Destination(route_address(prefix.network())));
    msg.attributes.push(RouteAttribute::Oif(ifindex));
    if let Some(gw) = via {
        // The gateway is not on any subnet of the device: `onlink` tells the kernel to trust it.
        msg.header.flags = RouteFlags::Onlink;
        msg.attributes
            .push(RouteAttribute::Gateway(route_address(gw)));
    }
    msg
}

/// Sends one request and waits for its acknowledgement.
pub(crate) fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    exchange(msg, flags, |_| {})
}

/// Sends one request (a change, a get or, with `NLM_F_DUMP`, a dump) and hands every message
/// the kernel answers with to `on_reply`, until its acknowledgement or the end of the dump.
pub(crate) fn exchange(
    msg: RouteNetlinkMessage,
    flags: u16,
    mut on_reply: impl FnMut(RouteNetlinkMessage),
) -> io::Result<()> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&sock).set_read_timeout(Some(ACK_TIMEOUT))?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.header.length as usize];
    packet.serialize(&mut buf);
    sock.send(&buf, 0)?;

    // Room for a whole dump message batch (the kernel fills up to 32 KiB per read).
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut &mut rx[..], 0).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel")
            } else {
                e
            }
        })?;
        let mut at = 0;
        while at < n {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::other(format!("unreadable netlink answer: {e}")))?;
            let len = reply.header.length as usize;
            if reply.header.sequence_number == 1 {
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(m) => on_reply(m),
                    _ => {}
                }
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}

/// Adds (or replaces) the route `prefix dev ifindex`, with `via GW onlink` when given.
pub fn add_route(prefix: IpNet, ifindex: u32, via: Option<IpAddr>) -> io::Result<()> {
    request(
        RouteNetlinkMessage::NewRoute(route_message(prefix, ifindex, via)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Deletes the route `prefix dev ifindex`.
pub fn del_route(prefix: IpNet, ifindex: u32) -> io::Result<()> {
    let mut msg = route_message(prefix, ifindex, None);
    // Match any scope: the route may have been installed with a gateway.
    msg.header.scope = RouteScope::NoWhere;
    request(RouteNetlinkMessage::DelRoute(msg), 0)
}

/// The kernel routes vtepd installed on one device; each is removed again on drop (or by
/// [`KernelRoutes::remove`]), and routes it did not install are never touched.
#[derive(Debug)]
pub struct KernelRoutes {
    dev: String,
    ifindex: u32,
    /// Whether routes carry `via GW onlink` (L3 VXLAN) or only `dev` (IPIP).
    with_gateway: bool,
    installed: Mutex<BTreeSet<IpNet>>,
}

impl KernelRoutes {
    /// Routes on device `dev` (which must exist and be up to take routes).
    pub fn new(dev: &str, with_gateway: bool) -> io::Result<KernelRoutes> {
        Ok(KernelRoutes {
            dev: dev.to_owned(),
            ifindex: ifindex(dev)?,
            with_gateway,
            installed: Mutex::new(BTreeSet::new()),
        })
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, BTreeSet<IpNet>> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs (or replaces) the kernel route for `prefix` (`via` is used only when the
    /// routes carry gateways).
    pub fn install(&self, prefix: IpNet, via: IpAddr) -> io::Result<()> {
        let gw = self.with_gateway.then_some(via);
        add_route(prefix, self.ifindex, gw).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot add route {prefix} dev {}: {e}", self.dev),
            )
        })?;
        debug!(%prefix, dev = %self.dev, "kernel route installed");
        self.installed().insert(prefix);
        Ok(())
    }

    /// Removes the kernel route for `prefix` if we installed it (a route already gone is fine).
    pub fn remove(&self, prefix: IpNet) -> io::Result<()> {
        if !self.installed().remove(&prefix) {
            return Ok(());
        }
        match del_route(prefix, self.ifindex) {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot delete route {prefix} dev {}: {e}", self.dev),
            )),
        }
    }

    /// The prefixes installed now.
    pub fn list(&self) -> Vec<IpNet> {
        self.installed().iter().copied().collect()
    }
}

/// The route (or its device) no longer exists.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ESRCH) | Some(libc::ENODEV) | Some(libc::ENOENT)
    )
}

impl Drop for KernelRoutes {
    fn drop(&mut self) {
        let all = std::mem::take(&mut *self.installed());
        for prefix in all {
            match del_route(prefix, self.ifindex) {
                Ok(()) => debug!(%prefix, dev = %self.dev, "kernel route removed"),
                Err(e) if gone(&e) => {}
                Err(e) => warn!(%prefix, dev = %self.dev, "cannot remove kernel route: {e}"),
            }
        }
    }
}

/// Why a route change failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteChangeError {
    /// The route table refused it (bad prefix or next hop, a loop, full): the request's fault.
    #[error("{0}")]
    Refused(#[from] RouteError),
    /// The kernel refused it; the table was left as it was.
    #[error("{0}")]
    Kernel(io::Error),
}

/// The route table together with its mirror in the kernel: every change applies to both (the
/// table at once, for the data path; the kernel route so the host sends matching packets into
/// the device), or to neither.
#[derive(Debug)]
pub struct RouteService {
    table: Arc<Routes>,
    kernel: KernelRoutes,
}

impl RouteService {
    /// Installs a kernel route for every route already in `table`.
    pub fn new(table: Arc<Routes>, kernel: KernelRoutes) -> io::Result<RouteService> {
        for r in table.list() {
            kernel.install(r.prefix, r.via)?;
        }
        Ok(RouteService { table, kernel })
    }

    /// The route table.
    pub fn table(&self) -> &Arc<Routes> {
        &self.table
    }

    /// The device the kernel routes point to.
    pub fn dev(&self) -> &str {
        &self.kernel.dev
    }

    /// Adds or replaces a route; returns the next hop it replaced.
    pub fn add(&self, route: Route) -> Result<Option<IpAddr>, RouteChangeError> {
        let old = self.table.add(route)?;
        if let Err(e) = self.kernel.install(route.prefix, route.via) {
            // Put the table back as it was: the change happens everywhere or nowhere.
            match old {
                Some(via) => {
                    let _ = self.table.add(Route {
                        prefix: route.prefix,
                        via,
                    });
                }
                None => {
                    self.table.del(route.prefix);
                }
            }
            return Err(RouteChangeError::Kernel(e));
        }
        Ok(old)
    }

    /// Removes the route for exactly `prefix`; returns its next hop (`None`: there was none).
    pub fn del(&self, prefix: IpNet) -> Result<Option<IpAddr>, RouteChangeError> {
        if !self.table.list().iter().any(|r| r.prefix == prefix) {
            return Ok(None);
        }
        self.kernel
            .remove(prefix)
            .map_err(RouteChangeError::Kernel)?;
        Ok(self.table.del(prefix))
    }

    /// Every route, sorted by prefix.
    pub fn list(&self) -> Vec<Route> {
        self.table.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::private_netns;
    use std::net::Ipv4Addr;

    #[test]
    fn messages_carry_prefix_device_and_gateway() {
        let p: IpNet = "10.0.1.0/26".parse().unwrap();
        let m = route_message(p, 7, None);
        assert_eq!(m.header.destination_prefix_length, 26);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(
            m.attributes
                .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                    Ipv4Addr::new(10, 0, 1, 0)
                )))
        );
        let g = route_message(p, 7, Some(Ipv4Addr::new(10, 0, 1, 0).into()));
        assert_eq!(g.header.flags, RouteFlags::Onlink);
        assert_eq!(g.header.scope, RouteScope::Universe);
        assert!(
            g.attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    10, 0, 1, 0
                ))))
        );
    }

    /// In a private network namespace: a TUN device takes a route, the route makes its prefix
    /// reachable, and removing it (or dropping the owner) makes it unreachable again.
    #[test]
    fn routes_on_a_tun_in_a_private_namespace() {
        private_netns::run(|| {
            let tun = crate::daemon::tun::open_tun(
                "vt-nltest0",
                1400,
                None,
                crate::daemon::tun_ipv6::Ipv6Setup::Kernel,
                false,
                1,
            )
            .unwrap();
            let reach = |ip: &str| {
                std::net::UdpSocket::bind("0.0.0.0:0")
                    .unwrap()
                    .connect((ip, 9))
                    .is_ok()
            };
            assert!(!reach("10.0.1.5"));
            let k = KernelRoutes::new("vt-nltest0", false).unwrap();
            assert_eq!(k.ifindex(), tun.ifindex);
            let p: IpNet = "10.0.1.0/26".parse().unwrap();
            let q: IpNet = "10.0.2.0/26".parse().unwrap();
            k.install(p, Ipv4Addr::new(192, 0, 2, 2).into()).unwrap();
            k.install(p, Ipv4Addr::new(192, 0, 2, 3).into()).unwrap(); // replace is fine
            k.install(q, Ipv4Addr::new(192, 0, 2, 3).into()).unwrap();
            assert!(reach("10.0.1.5") && reach("10.0.2.5"));
            assert!(!reach("10.0.1.77"));
            assert_eq!(k.list(), vec![p, q]);
            k.remove(p).unwrap();
            k.remove(p).unwrap(); // not ours any more: nothing to do
            assert!(!reach("10.0.1.5"));
            drop(k);
            assert!(!reach("10.0.2.5"), "dropping the owner removes its routes");
            // (`via GW onlink` needs loopback up, which a bare namespace lacks: the lab covers it.)
        });
    }

    #[test]
    fn unknown_device_is_an_error() {
        assert!(KernelRoutes::new("no-such-dev-x9", false).is_err());
    }
}
