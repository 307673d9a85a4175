//! The system side of a network: the underlay interface holding `--local`, the privilege check,
//! and the TAP device (through `tun-rs`).

use crate::config::{self, NetConfig};
use crate::error::Failure;
use crate::sys;
use encap::MacAddr;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

/// The interface that holds our underlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Interface name.
    pub ifname: String,
    /// Its MTU.
    pub mtu: u32,
}

/// Finds the interface holding `local` in our network namespace (a usage error if none does).
pub fn find_underlay(local: Ipv4Addr) -> Result<Underlay, Failure> {
    let ifaces = getifaddrs::getifaddrs()
        .map_err(|e| Failure::Runtime(format!("cannot list interfaces: {e}")))?;
    let ifname = ifaces
        .filter(|i| matches!(&i.address, getifaddrs::Address::V4(a) if a.address == local))
        .map(|i| i.name)
        .next()
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--local {local} is not an address of this host (in this network namespace)"
            ))
        })?;
    let mtu = sys::interface_mtu(&ifname)
        .map_err(|e| Failure::Runtime(format!("cannot read the MTU of {ifname}: {e}")))?;
    Ok(Underlay { ifname, mtu })
}

/// Bytes VXLAN over IPv4 adds in front of an inner IP packet (outer IPv4, UDP, VXLAN and the
/// inner Ethernet header): what an overlay MTU leaves of the underlay's.
pub const VXLAN_MTU_OVERHEAD: usize = encap::tunnel::vxlan::MTU_OVERHEAD;
/// Bytes IPIP adds in front of an inner IPv4 packet (the outer IPv4 header).
pub const IPIP_MTU_OVERHEAD: usize = encap::tunnel::ipip::OVERHEAD;

/// The MTU of device `dev`: `mtu` (`--mtu`) when given, or the underlay MTU minus the
/// tunnel's `overhead`.
pub fn overlay_mtu(
    dev: &str,
    mtu: Option<u16>,
    underlay: &Underlay,
    overhead: usize,
) -> Result<u16, Failure> {
    if let Some(m) = mtu {
        return Ok(m);
    }
    // A jumbo underlay (loopback has 65536) is capped so a datagram still fits in 64 KiB.
    let derived = underlay
        .mtu
        .saturating_sub(u32::try_from(overhead).unwrap_or(u32::MAX))
        .min(u32::from(config::MAX_MTU));
    u16::try_from(derived)
        .ok()
        .filter(|m| *m >= config::MIN_MTU)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "dev {dev}: underlay {} has MTU {}, which leaves {derived} for the overlay; give --mtu",
                underlay.ifname, underlay.mtu
            ))
        })
}

/// Warns, in one line, when device `dev`'s MTU `mtu` is more than one underlay packet carries
/// after `tunnel`'s `overhead` bytes: what does not fit is never sent (counted `too_big`);
/// `then` says what happens to such packets. Returns whether it warned.
pub fn warn_if_above_underlay(
    dev: &str,
    mtu: u16,
    underlay: &Underlay,
    tunnel: &str,
    overhead: usize,
    then: &str,
) -> bool {
    let fits = underlay
        .mtu
        .saturating_sub(u32::try_from(overhead).unwrap_or(u32::MAX));
    if u32::from(mtu) <= fits {
        return false;
    }
    tracing::warn!(
        "dev {dev}: MTU {mtu} is more than the underlay carries: {} has MTU {}, which leaves {fits} \
         after {tunnel}'s {overhead} bytes; {then} (counted too_big)",
        underlay.ifname,
        underlay.mtu
    );
    true
}

/// CAP_NET_ADMIN's bit in the capability sets (TAP devices).
const CAP_NET_ADMIN: u32 = 12;
/// CAP_NET_RAW's bit (the raw socket that sends encapsulated packets).
const CAP_NET_RAW: u32 = 13;

/// Fails with a clear runtime error unless we hold CAP_NET_ADMIN and CAP_NET_RAW (root does).
pub fn check_privilege() -> Result<(), Failure> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Failure::Runtime(format!("cannot read /proc/self/status: {e}")))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match cap_eff {
        Some(caps) if caps & (1 << CAP_NET_ADMIN) != 0 && caps & (1 << CAP_NET_RAW) != 0 => Ok(()),
        Some(_) => Err(Failure::Runtime(
            "vtepd run needs CAP_NET_ADMIN (TAP devices) and CAP_NET_RAW (raw socket): run it as root"
                .into(),
        )),
        // No capability line: not Linux-like /proc; let the device calls report errors.
        None => Ok(()),
    }
}

/// Whether an interface with this name exists in our network namespace.
pub fn interface_exists(name: &str) -> bool {
    getifaddrs::if_nametoindex(name).is_ok()
}

/// An open TAP device.
pub struct Tap {
    /// The device's queues (one per worker when multi-queue, else one), shared with the
    /// workers; the device goes away with the last handle if we created it.
    pub queues: Vec<Arc<SyncDevice>>,
    /// Device name.
    pub name: String,
    /// True when vtepd created the device (and so removes it on exit).
    pub created: bool,
    /// The device's MAC address.
    pub mac: MacAddr,
    /// The device's MTU.
    pub mtu: u16,
    /// Every frame read or written carries a virtio-net header (IFF_VNET_HDR), which lets
    /// the workers hand merged TCP segments to the kernel (see `batch_gro`).
    pub vnet_hdr: bool,
}

/// Creates (or attaches to) network `net`'s TAP device, sets its MTU, MAC (if we create it;
/// an existing device keeps its own), address, brings it up and makes it non-blocking.
/// With `queues > 1` the device is multi-queue and gets that many queues (the kernel steers
/// each flow to one of them); an existing single-queue device cannot take more queues, so it is
/// attached with one (and a warning). The device gets virtio-net headers (with every offload
/// the kernel could send us turned off) unless it refuses them.
pub fn open_tap(net: &NetConfig, mtu: u16, mac: MacAddr, queues: usize) -> Result<Tap, Failure> {
    let existed = interface_exists(&net.dev);
    let tap = match open_tap_queues(net, mtu, mac, existed, queues, true) {
        Ok(t) => Ok(t),
        Err(_) if !existed => {
            // A fresh device without IFF_VNET_HDR: plain frames, no receive offload.
            open_tap_queues(net, mtu, mac, existed, queues, false)
        }
        Err(e) => Err(e),
    };
    match tap {
        Err(Failure::Usage(_)) if existed && queues > 1 => {
            let tap = open_tap_queues(net, mtu, mac, existed, 1, false)?;
            tracing::warn!(
                dev = %net.dev,
                "existing device is not multi-queue: one queue only (its frames go to one worker)"
            );
            Ok(tap)
        }
        r => r,
    }
}

fn open_tap_queues(
    net: &NetConfig,
    mtu: u16,
    mac: MacAddr,
    existed: bool,
    queues: usize,
    vnet_hdr: bool,
) -> Result<Tap, Failure> {
    let mut b = DeviceBuilder::new()
        .name(net.dev.clone())
        .layer(Layer::L2)
        .mtu(mtu)
        .multi_queue(queues > 1)
        .offload(vnet_hdr);
    if !existed {
        b = b.mac_addr(mac.octets());
    }
    if let Some(a) = net.address {
        b = b.ipv4(a.addr, a.prefix, None);
    }
    let dev = b
        .build_sync()
        .map_err(|e| tap_error(&net.dev, existed, &e))?;
    let mac = if existed {
        MacAddr(dev.mac_address().map_err(|e| {
            Failure::Runtime(format!("cannot read the MAC address of {}: {e}", net.dev))
        })?)
    } else {
        mac
    };
    let nonblocking = |d: &SyncDevice| {
        d.set_nonblocking(true)
            .map_err(|e| Failure::Runtime(format!("cannot make {} non-blocking: {e}", net.dev)))
    };
    nonblocking(&dev)?;
    let mut all = Vec::with_capacity(queues);
    for _ in 1..queues {
        let q = dev.try_clone().map_err(|e| {
            Failure::Runtime(format!("cannot open another queue of {}: {e}", net.dev))
        })?;
        nonblocking(&q)?;
        all.push(Arc::new(q));
    }
    all.insert(0, Arc::new(dev));
    if vnet_hdr {
        // tun-rs turns on TSO for both IP versions (and USO) with the header; the workers
        // segment TCP/IPv4 super-frames (batch_tso) and complete partial checksums, so keep
        // exactly those: the kernel segments the rest before handing it over.
        let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
        sys::tun_set_offload(&*all[0], flags).map_err(|e| {
            Failure::Runtime(format!("cannot turn the offloads of {} off: {e}", net.dev))
        })?;
    }
    Ok(Tap {
        vnet_hdr,
        queues: all,
        name: net.dev.clone(),
        created: !existed,
        mac,
        mtu,
    })
}

/// A device as the runner holds it until teardown: vtepd's handles on its queues, so a
/// device vtepd created goes away when this is dropped (the workers' handles are gone by then).
pub struct OwnedDevice {
    /// Device name.
    pub name: String,
    /// True when vtepd created the device (its drop then removes it).
    pub created: bool,
    /// The queues.
    queues: Vec<Arc<SyncDevice>>,
}

impl OwnedDevice {
    /// Holds `queues` of device `name` (`created`: vtepd made it).
    pub fn new(name: String, created: bool, queues: Vec<Arc<SyncDevice>>) -> OwnedDevice {
        OwnedDevice {
            name,
            created,
            queues,
        }
    }
}

impl std::fmt::Debug for OwnedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedDevice")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl From<Tap> for OwnedDevice {
    fn from(t: Tap) -> OwnedDevice {
        OwnedDevice::new(t.name, t.created, t.queues)
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .field("vnet_hdr", &self.vnet_hdr)
            .finish_non_exhaustive()
    }
}

fn tap_error(dev: &str, existed: bool, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Failure::Runtime(format!(
            "cannot open TAP device {dev}: {e} (vtepd run needs root or CAP_NET_ADMIN)"
        )),
        Some(libc::EINVAL) if existed => Failure::Usage(format!(
            "device {dev} already exists and is not a TAP device vtepd can attach to"
        )),
        Some(libc::EBUSY) => Failure::Runtime(format!(
            "TAP device {dev} is busy (held by another process?)"
        )),
        _ => Failure::Runtime(format!("cannot set up TAP device {dev}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encap::Vni;

    #[test]
    fn loopback_is_an_underlay() {
        let u = find_underlay(Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(u.ifname, "lo");
        assert!(u.mtu >= 1500);
        let e = find_underlay(Ipv4Addr::new(203, 0, 113, 254)).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    /// The MTU of an L2 network's device, as the L2 mode derives it.
    fn device_mtu(n: &NetConfig, u: &Underlay) -> Result<u16, Failure> {
        overlay_mtu(&n.dev, n.mtu, u, VXLAN_MTU_OVERHEAD)
    }

    #[test]
    fn an_mtu_above_the_underlay_is_warned_about() {
        let u = Underlay {
            ifname: "eth0".into(),
            mtu: 1500,
        };
        let warn = |mtu, overhead| warn_if_above_underlay("v", mtu, &u, "T", overhead, "x");
        assert!(!warn(1450, VXLAN_MTU_OVERHEAD));
        assert!(warn(1451, VXLAN_MTU_OVERHEAD));
        assert!(warn(9000, VXLAN_MTU_OVERHEAD));
        assert!(!warn(1480, IPIP_MTU_OVERHEAD));
        assert!(warn(1481, IPIP_MTU_OVERHEAD));
    }

    #[test]
    fn mtu_derivation() {
        let mut n = NetConfig::new("v".into(), Vni::new(1).unwrap());
        let u = Underlay {
            ifname: "eth0".into(),
            mtu: 1500,
        };
        assert_eq!(device_mtu(&n, &u), Ok(1450));
        n.mtu = Some(1300);
        assert_eq!(device_mtu(&n, &u), Ok(1300));
        n.mtu = None;
        let small = Underlay {
            ifname: "x".into(),
            mtu: 100,
        };
        assert_eq!(device_mtu(&n, &small).unwrap_err().exit_code(), 2);
        let jumbo = Underlay {
            ifname: "lo".into(),
            mtu: 65536,
        };
        assert_eq!(device_mtu(&n, &jumbo), Ok(config::MAX_MTU));
    }
}
