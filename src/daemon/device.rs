//! The system side of a network: the underlay interface holding `--local`, the privilege check,
//! the TAP device (through `tun-rs`), and what every device of vtepd's goes through: set up
//! after it is opened ([`configure`]), given back as it was found when vtepd only attached to it
//! ([`Restore`]), or removed with the others in one batch when vtepd created it ([`release`]).

use super::{in_use, link};
use crate::config::{self, Ipv4Cidr, NetConfig};
use crate::error::Failure;
use crate::sys;
use encap::MacAddr;
use std::io;
use std::net::IpAddr;
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
pub fn find_underlay(local: IpAddr) -> Result<Underlay, Failure> {
    let ifaces = getifaddrs::getifaddrs()
        .map_err(|e| Failure::Runtime(format!("cannot list interfaces: {e}")))?;
    let ifname = ifaces
        .filter(|i| match &i.address {
            getifaddrs::Address::V4(a) => IpAddr::V4(a.address) == local,
            getifaddrs::Address::V6(a) => IpAddr::V6(a.address) == local,
            _ => false,
        })
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
/// [`VXLAN_MTU_OVERHEAD`] over an underlay of `local`'s family (70 over IPv6).
pub fn vxlan_mtu_overhead(local: IpAddr) -> usize {
    match local {
        IpAddr::V4(_) => VXLAN_MTU_OVERHEAD,
        IpAddr::V6(_) => encap::tunnel::vxlan6::MTU_OVERHEAD,
    }
}
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
    /// The device's interface index.
    pub ifindex: u32,
    /// For a device vtepd only attached to: what to put back once the queues are closed (after
    /// them, so dropped last).
    pub restore: Restore,
}

/// Creates (or attaches to) network `net`'s TAP device, sets its MTU, MAC (if we create it;
/// an existing device keeps its own), address, brings it up and makes it non-blocking (see
/// [`configure`]; an existing device is given back as it was at exit, see [`Restore`]).
/// With `queues > 1` the device is multi-queue and gets that many queues (the kernel steers
/// each flow to one of them); an existing single-queue device cannot take more queues, so it is
/// attached with one (and a warning). The device gets virtio-net headers (with every offload
/// the kernel could send us turned off) unless it refuses them.
pub fn open_tap(net: &NetConfig, mtu: u16, mac: MacAddr, queues: usize) -> Result<Tap, Failure> {
    let existed = interface_exists(&net.dev);
    if existed {
        in_use::refuse_if_held(&net.dev, 0)?;
    }
    let before = Restore::before(&net.dev, existed)?;
    let mut tap = open_tap_any(net, mtu, mac, existed, queues)?;
    tap.restore = Restore::new(before);
    // Another process may have attached meanwhile (two daemons started at once).
    in_use::refuse_if_held(&net.dev, tap.queues.len())?;
    let multi_queue = !existed && tap.queues.len() > 1;
    (tap.ifindex, tap.restore.added) = configure(&tap.name, multi_queue, net.address, true)?;
    Ok(tap)
}

fn open_tap_any(
    net: &NetConfig,
    mtu: u16,
    mac: MacAddr,
    existed: bool,
    queues: usize,
) -> Result<Tap, Failure> {
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
    // Address and state are vtepd's own work (`configure`): added, not replaced, and up only
    // once the queueing discipline is settled.
    let mut b = DeviceBuilder::new()
        .name(net.dev.clone())
        .layer(Layer::L2)
        .mtu(mtu)
        .multi_queue(queues > 1)
        .offload(vnet_hdr)
        .inherit_enable_state();
    if !existed {
        b = b.mac_addr(mac.octets());
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
        // segment TCP/IPv4 and TCP/IPv6 super-frames (batch_tso) and complete partial
        // checksums, so keep exactly those: the kernel segments the rest (UDP, TCP/IPv6 with
        // extension headers) before handing it over.
        let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
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
        ifindex: 0,
        restore: Restore::default(),
    })
}

/// What [`configure`] gives a device vtepd created with several queues: one root queueing
/// discipline of the system's default kind (`net.core.default_qdisc`; `pfifo_fast` if that
/// kind cannot be made), as a single-queue device gets, rather than the kernel's `mq` with one
/// child per possible queue. A multi-queue TUN/TAP device has 256 transmit queues whatever
/// vtepd opens, so `mq` makes 256 qdiscs at up (with `pfifo_fast`, 3 rings of the queue length
/// each: about 6 MB of kernel memory and 20 ms per device with 1000 devices). The device never
/// stops its queues (a full ring drops), so the qdisc never holds packets either way.
fn root_qdisc(ifindex: u32, dev: &str) {
    let kind = std::fs::read_to_string("/proc/sys/net/core/default_qdisc")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    for k in [kind.as_str(), "pfifo_fast"] {
        if k.is_empty() {
            continue;
        }
        match link::set_root_qdisc(ifindex, k) {
            Ok(()) => return,
            Err(e) => tracing::debug!(%dev, kind = k, "cannot set the root qdisc: {e}"),
        }
    }
    tracing::warn!(%dev, "cannot set one root qdisc: the kernel's default mq stays");
}

/// Sets up a device just opened: one root qdisc if vtepd created it with several queues
/// (`multi_queue`, see [`root_qdisc`]), then the address (added, with a broadcast address when
/// `broadcast`, as an Ethernet device has), then up. Returns its interface index and the
/// address if vtepd added it (`None`: none asked, or the device had it already).
pub fn configure(
    dev: &str,
    multi_queue: bool,
    address: Option<Ipv4Cidr>,
    broadcast: bool,
) -> Result<(u32, Option<Ipv4Cidr>), Failure> {
    let rt = |what: &str, e: io::Error| Failure::Runtime(format!("{what} {dev}: {e}"));
    let ifindex = super::netlink::ifindex(dev).map_err(|e| rt("cannot find the index of", e))?;
    if multi_queue {
        root_qdisc(ifindex, dev);
    }
    let added = match address {
        Some(a) => link::add_address(ifindex, a, broadcast)
            .map_err(|e| rt(&format!("cannot add address {a} to"), e))?
            .then_some(a),
        None => None,
    };
    let up = link::Change {
        up: Some(true),
        ..link::Change::default()
    };
    link::set(ifindex, up).map_err(|e| rt("cannot bring up", e))?;
    Ok((ifindex, added))
}

/// A device's state before vtepd attached to it ([`Restore::before`]); it becomes a
/// [`Restore`] once vtepd has attached (a device vtepd could not attach to was not changed).
#[derive(Debug, Clone)]
pub struct Before {
    link: link::LinkInfo,
    /// Its IPv6 sysctls (`None`: no IPv6 in the namespace).
    ipv6: Option<super::tun_ipv6::Ipv6Before>,
    /// Its TUN/TAP flags (`/sys/class/net/DEV/tun_flags`), when readable.
    tun_flags: Option<u32>,
}

/// What vtepd changed on a device it did not create, put back when this is dropped (after the
/// device's queues are closed): its TUN/TAP flags (virtio-net header) and offloads (none: the
/// kernel has no call that reads a TUN's offload flags back, and none is what a device no
/// program set up has and what is safe for whichever program attaches next), the address vtepd
/// added, its MTU, transmit queue length and administrative state. Empty (`default`) for a
/// device vtepd created: that one is removed instead.
#[derive(Debug, Default)]
pub struct Restore {
    before: Option<Before>,
    /// The address vtepd added (`None`: none, or the device had it already).
    pub added: Option<Ipv4Cidr>,
    /// The IPv6 address vtepd added.
    pub added6: Option<crate::config::Ipv6Cidr>,
}

impl Restore {
    /// Reads the state of device `dev` if it `existed` (else nothing to put back).
    pub fn before(dev: &str, existed: bool) -> Result<Option<Before>, Failure> {
        if !existed {
            return Ok(None);
        }
        let link = link::get(dev)
            .map_err(|e| Failure::Runtime(format!("cannot read the state of {dev}: {e}")))?;
        let tun_flags = std::fs::read_to_string(format!("/sys/class/net/{dev}/tun_flags"))
            .ok()
            .and_then(|t| u32::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok());
        let ipv6 = super::tun_ipv6::Ipv6Before::read(dev);
        Ok(Some(Before {
            link,
            tun_flags,
            ipv6,
        }))
    }

    /// What to put back on a device that was as `before` says (`None`: vtepd created it).
    pub fn new(before: Option<Before>) -> Restore {
        Restore {
            before,
            added: None,
            added6: None,
        }
    }

    fn put_back(
        b: &Before,
        added: Option<Ipv4Cidr>,
        added6: Option<crate::config::Ipv6Cidr>,
    ) -> io::Result<()> {
        let l = &b.link;
        if let Some(flags) = b.tun_flags {
            sys::tun_reattach(&l.name, flags)?;
        }
        if let Some(a) = added {
            link::del_address(l.index, a)?;
        }
        if let Some(a) = added6 {
            link::del_address6(l.index, a)?;
        }
        if let Some(v) = &b.ipv6 {
            v.put_back(&l.name)?;
        }
        link::set(
            l.index,
            link::Change {
                up: Some(l.up),
                mtu: Some(l.mtu),
                txqlen: Some(l.txqlen),
                group: None,
            },
        )
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let Some(b) = self.before.take() else {
            return;
        };
        let dev = &b.link.name;
        match Restore::put_back(&b, self.added, self.added6) {
            Ok(()) => tracing::info!(
                %dev,
                up = b.link.up,
                mtu = b.link.mtu,
                "device given back as it was (state, MTU, queue length, addresses, offloads)"
            ),
            Err(e) if !interface_exists(dev) => {
                tracing::debug!(%dev, "device gone, nothing to put back: {e}");
            }
            Err(e) => tracing::warn!(%dev, "cannot put the device back as it was: {e}"),
        }
    }
}

/// First device group tried for the batch removal of vtepd's devices (ASCII "vt", then the
/// process ID, so that two daemons in one namespace pick different groups).
const GROUP_BASE: u32 = 0x7674_0000;

/// Removes the devices vtepd created and gives back those it attached to, after every worker
/// stopped.
///
/// Closing a device's last queue removes it, but the kernel then unregisters each device on its
/// own, waiting each time for every reader of the network state (RCU grace periods, under the
/// one lock of the network stack): with 1000 devices that took about 20 s, with 10000 over
/// three minutes (systemd stops waiting after 90). So the created devices are first put into a device group of their own and deleted
/// with one netlink request (`ip link del group N`), which the kernel unregisters as one batch;
/// their queues are closed afterwards, at no cost. If that cannot be done (another device in
/// the group, an old kernel), each goes away with its queues, one by one, as before.
pub fn release(devices: Vec<OwnedDevice>) {
    let (created, kept): (Vec<_>, Vec<_>) = devices.into_iter().partition(|d| d.created);
    if !created.is_empty() {
        match delete_as_group(&created) {
            Ok(n) => tracing::info!(devices = n, "devices removed ({})", names(&created)),
            Err(e) => {
                tracing::warn!(
                    "cannot remove the devices in one batch ({e}): closing them one by one"
                );
                let n = created.len();
                drop(created);
                tracing::info!(devices = n, "devices closed");
                return drop(kept);
            }
        }
    }
    drop(created);
    // Each is given back as it was once its queues are closed (`Restore`'s drop).
    drop(kept);
}

/// The names of `devices`, the first few.
fn names(devices: &[OwnedDevice]) -> String {
    const SHOWN: usize = 8;
    let mut s = devices
        .iter()
        .take(SHOWN)
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if devices.len() > SHOWN {
        s.push_str(&format!(" and {} more", devices.len() - SHOWN));
    }
    s
}

/// Puts `devices` (still open) into a device group no other link is in and deletes that group
/// in one request; returns how many were deleted.
fn delete_as_group(devices: &[OwnedDevice]) -> io::Result<usize> {
    let links = link::all()?;
    let used: std::collections::HashSet<u32> = links.iter().map(|l| l.group).collect();
    let start = GROUP_BASE | (std::process::id() & 0xffff);
    let group = (0..=u16::MAX)
        .map(|k| GROUP_BASE | (start.wrapping_add(u32::from(k)) & 0xffff))
        .find(|g| !used.contains(g))
        .ok_or_else(|| io::Error::other("no free device group"))?;
    let ours: std::collections::HashMap<u32, &str> = devices
        .iter()
        .map(|d| (d.ifindex, d.name.as_str()))
        .collect();
    for l in &links {
        // Only a link that is still ours: same index and name.
        if ours.get(&l.index) == Some(&l.name.as_str()) {
            let g = link::Change {
                group: Some(group),
                ..link::Change::default()
            };
            link::set(l.index, g)?;
        }
    }
    let members: Vec<u32> = link::all()?
        .into_iter()
        .filter(|l| l.group == group)
        .map(|l| l.index)
        .collect();
    if let Some(other) = members.iter().find(|i| !ours.contains_key(i)) {
        return Err(io::Error::other(format!(
            "link {other} joined device group {group:#x}"
        )));
    }
    if members.is_empty() {
        return Ok(0);
    }
    link::delete_group(group)?;
    Ok(members.len())
}

/// A device as the runner holds it until teardown: vtepd's handles on its queues, and what to
/// put back (a device vtepd attached to) once they are closed. A device vtepd created goes away
/// with its last handle, or earlier with the others in one batch ([`release`]).
pub struct OwnedDevice {
    /// Device name.
    pub name: String,
    /// True when vtepd created the device (it is removed at exit).
    pub created: bool,
    /// The device's interface index.
    pub ifindex: u32,
    /// The queues.
    queues: Vec<Arc<SyncDevice>>,
    /// Put back after the queues are closed: declared after them, so dropped after them.
    restore: Restore,
}

impl OwnedDevice {
    /// Holds `queues` of device `name` of index `ifindex` (`created`: vtepd made it), and what
    /// to put back.
    pub fn new(
        name: String,
        created: bool,
        ifindex: u32,
        queues: Vec<Arc<SyncDevice>>,
        restore: Restore,
    ) -> OwnedDevice {
        OwnedDevice {
            name,
            created,
            ifindex,
            queues,
            restore,
        }
    }
}

impl std::fmt::Debug for OwnedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedDevice")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .field("restore", &self.restore)
            .finish()
    }
}

impl From<Tap> for OwnedDevice {
    fn from(t: Tap) -> OwnedDevice {
        OwnedDevice::new(t.name, t.created, t.ifindex, t.queues, t.restore)
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
        Some(libc::EPERM) => Failure::Runtime(format!(
            "cannot open TAP device {dev}: {e} (vtepd run needs root or CAP_NET_ADMIN)"
        )),
        Some(libc::EACCES) => Failure::Runtime(format!(
            "cannot open TAP device {dev}: {e} (vtepd's user must be able to open \
             /dev/net/tun: root, or mode 0666 as udev makes it)"
        )),
        Some(libc::EINVAL) if existed => Failure::Usage(format!(
            "device {dev} already exists and is not a TAP device vtepd can attach to"
        )),
        Some(libc::EBUSY) => in_use::held(dev, "it"),
        _ => Failure::Runtime(format!("cannot set up TAP device {dev}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encap::Vni;
    use std::net::Ipv4Addr;

    #[test]
    fn loopback_is_an_underlay() {
        let u = find_underlay(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(u.ifname, "lo");
        assert!(u.mtu >= 1500);
        let e = find_underlay(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254))).unwrap_err();
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
