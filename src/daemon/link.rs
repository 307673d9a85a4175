//! What vtepd does to its devices as links, through rtnetlink ([`super::netlink::exchange`]):
//! read a link's state, change its administrative state, MTU, queue length and group, add and
//! remove an IPv4 or IPv6 address, give a multi-queue device one root queueing discipline, and delete
//! a group of links in one request.
//!
//! Addresses are added (never replaced, as the `SIOCSIFADDR` ioctl does with a device's first
//! address), so that an address the device already had stays and vtepd knows whether the one
//! it asked for was its own doing.

use super::netlink::{exchange, request};
use crate::config::{Ipv4Cidr, Ipv6Cidr};
use netlink_packet_core::Nla;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, LinkAttribute, LinkFlags, LinkInfo as Info, LinkMessage,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::IpAddr;

/// A link as the kernel reports it: what vtepd may change and puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// Transmit queue length (packets).
    pub txqlen: u32,
    /// Device group (0: the default group).
    pub group: u32,
}

impl LinkInfo {
    fn from_message(m: &LinkMessage) -> LinkInfo {
        let mut l = LinkInfo {
            index: m.header.index,
            name: String::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            mtu: 0,
            txqlen: 0,
            group: 0,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name.clone_from(n),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::TxQueueLen(v) => l.txqlen = *v,
                LinkAttribute::Group(v) => l.group = *v,
                _ => {}
            }
        }
        l
    }
}

/// The link called `name`.
pub fn get(name: &str) -> io::Result<LinkInfo> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    let mut found = None;
    exchange(RouteNetlinkMessage::GetLink(msg), 0, |m| {
        if let RouteNetlinkMessage::NewLink(l) = m {
            found = Some(LinkInfo::from_message(&l));
        }
    })?;
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name}")))
}

/// IFLA_TUN_NUM_QUEUES: the queues attached to a TUN/TAP device (`linux/if_link.h`).
const IFLA_TUN_NUM_QUEUES: u16 = 8;
/// IFLA_TUN_NUM_DISABLED_QUEUES: queues attached but switched off (`TUNSETQUEUE`).
const IFLA_TUN_NUM_DISABLED_QUEUES: u16 = 9;

/// How many files (by any process) are attached to the TUN/TAP device `name` as queues,
/// enabled or not, as the kernel counts them; `None` if it is not a TUN/TAP device (or the
/// kernel does not say).
pub fn tun_queues(name: &str) -> io::Result<Option<u32>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    let mut found = None;
    exchange(RouteNetlinkMessage::GetLink(msg), 0, |m| {
        if let RouteNetlinkMessage::NewLink(l) = m {
            found = Some(tun_queues_of(&l));
        }
    })?;
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name}")))
}

fn tun_queues_of(m: &LinkMessage) -> Option<u32> {
    let infos = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(i) => Some(i),
        _ => None,
    })?;
    let data = infos.iter().find_map(|i| match i {
        Info::Data(InfoData::Tun(d)) => Some(d),
        _ => None,
    })?;
    let mut total = None;
    for nla in data {
        if matches!(
            nla.kind(),
            IFLA_TUN_NUM_QUEUES | IFLA_TUN_NUM_DISABLED_QUEUES
        ) && nla.value_len() == 4
        {
            let mut v = [0u8; 4];
            nla.emit_value(&mut v);
            total = Some(total.unwrap_or(0) + u32::from_ne_bytes(v));
        }
    }
    total
}

/// Every link of our network namespace.
pub fn all() -> io::Result<Vec<LinkInfo>> {
    let mut links = Vec::new();
    exchange(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
        |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                links.push(LinkInfo::from_message(&l));
            }
        },
    )?;
    Ok(links)
}

/// Changes to a link; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Administratively up or down.
    pub up: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Transmit queue length.
    pub txqlen: Option<u32>,
    /// Device group.
    pub group: Option<u32>,
}

/// Applies `change` to link `index`.
pub fn set(index: u32, change: Change) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = change.up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    if let Some(v) = change.mtu {
        msg.attributes.push(LinkAttribute::Mtu(v));
    }
    if let Some(v) = change.txqlen {
        msg.attributes.push(LinkAttribute::TxQueueLen(v));
    }
    if let Some(v) = change.group {
        msg.attributes.push(LinkAttribute::Group(v));
    }
    request(RouteNetlinkMessage::SetLink(msg), 0)
}

fn address_message(index: u32, a: Ipv4Cidr, broadcast: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = a.prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes
        .push(AddressAttribute::Local(IpAddr::V4(a.addr)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(a.addr)));
    if broadcast && a.prefix < 31 {
        let host = u32::MAX.checked_shr(u32::from(a.prefix)).unwrap_or(0);
        let brd = std::net::Ipv4Addr::from(u32::from(a.addr) | host);
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    msg
}

/// Adds address `a` to link `index` (with its broadcast address when `broadcast`, as an
/// Ethernet device has). `Ok(false)`: the link had it already (then it is not vtepd's).
pub fn add_address(index: u32, a: Ipv4Cidr, broadcast: bool) -> io::Result<bool> {
    add(address_message(index, a, broadcast))
}

fn address6_message(index: u32, a: Ipv6Cidr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet6;
    (msg.header.prefix_len, msg.header.index) = (a.prefix, index);
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V6(a.addr)));
    msg
}

/// Adds IPv6 address `a` to link `index`. `Ok(false)`: the link had it already.
pub fn add_address6(index: u32, a: Ipv6Cidr) -> io::Result<bool> {
    add(address6_message(index, a))
}

/// Removes IPv6 address `a` from link `index`.
pub fn del_address6(index: u32, a: Ipv6Cidr) -> io::Result<()> {
    request(
        RouteNetlinkMessage::DelAddress(address6_message(index, a)),
        0,
    )
}

fn add(msg: AddressMessage) -> io::Result<bool> {
    match request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes address `a` from link `index`.
pub fn del_address(index: u32, a: Ipv4Cidr) -> io::Result<()> {
    let msg = address_message(index, a, false);
    request(RouteNetlinkMessage::DelAddress(msg), 0)
}

/// Makes the root queueing discipline of link `index` one qdisc of `kind` for all its transmit
/// queues (`tc qdisc replace dev DEV root KIND`).
pub fn set_root_qdisc(index: u32, kind: &str) -> io::Result<()> {
    let mut msg = TcMessage::default();
    msg.header.family = AddressFamily::Unspec;
    msg.header.index = i32::try_from(index).map_err(io::Error::other)?;
    msg.header.parent = TcHandle::ROOT;
    msg.header.handle = TcHandle::UNSPEC;
    msg.attributes.push(TcAttribute::Kind(kind.to_owned()));
    request(
        RouteNetlinkMessage::NewQueueDiscipline(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Deletes every link in device group `group` in one request: the kernel unregisters them as
/// one batch (one wait for the network's readers for all of them, not one per device).
pub fn delete_group(group: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    request(RouteNetlinkMessage::DelLink(msg), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::private_netns::{self, ip};

    #[test]
    fn address_messages_carry_the_broadcast_of_ethernet_prefixes() {
        let a: Ipv4Cidr = "10.9.0.1/24".parse().unwrap();
        let m = address_message(7, a, true);
        assert_eq!((m.header.index, m.header.prefix_len), (7, 24));
        assert!(
            m.attributes
                .contains(&AddressAttribute::Broadcast(std::net::Ipv4Addr::new(
                    10, 9, 0, 255
                )))
        );
        let p2p: Ipv4Cidr = "10.9.0.1/31".parse().unwrap();
        let m = address_message(7, p2p, true);
        assert!(
            !m.attributes
                .iter()
                .any(|x| matches!(x, AddressAttribute::Broadcast(_)))
        );
        let m = address_message(7, a, false);
        assert_eq!(m.attributes.len(), 2, "local and address only");
    }

    /// In a private network namespace: a link's state read, changed and read again; an address
    /// added once (a second add says it was there) and removed; a group deleted in one request.
    #[test]
    fn links_in_a_private_namespace() {
        private_netns::run(|| {
            ip(&["tuntap", "add", "dev", "vt-lk0", "mode", "tap"]);
            let l = get("vt-lk0").unwrap();
            assert_eq!((l.up, l.group), (false, 0));
            set(
                l.index,
                Change {
                    up: Some(true),
                    mtu: Some(1400),
                    txqlen: Some(77),
                    group: Some(4242),
                },
            )
            .unwrap();
            let m = get("vt-lk0").unwrap();
            assert_eq!((m.up, m.mtu, m.txqlen, m.group), (true, 1400, 77, 4242));
            let a: Ipv4Cidr = "10.77.0.1/24".parse().unwrap();
            assert!(add_address(l.index, a, true).unwrap());
            assert!(!add_address(l.index, a, true).unwrap(), "already there");
            del_address(l.index, a).unwrap();
            assert!(add_address(l.index, a, true).unwrap(), "removed before");
            ip(&["tuntap", "add", "dev", "vt-lk1", "mode", "tun"]);
            ip(&["link", "set", "vt-lk1", "group", "4242"]);
            assert!(all().unwrap().iter().filter(|l| l.group == 4242).count() == 2);
            delete_group(4242).unwrap();
            assert!(all().unwrap().iter().all(|l| !l.name.starts_with("vt-lk")));
            assert!(get("vt-lk0").is_err());
        });
    }
}
