//! The L3 device: a TUN device (through `tun-rs`: layer 3, no packet-information header,
//! optionally with offloads: `IFF_VNET_HDR` with TSO/USO), with its MTU, optional address,
//! brought up and non-blocking.

use super::device::{Restore, configure, interface_exists};
use super::in_use;
use super::tun_ipv6::{self, Ipv6Setup};
use crate::config::Ipv4Cidr;
use crate::error::Failure;
use std::io;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

/// Packets the kernel may queue for vtepd on the device. The TUN default (500) overflows
/// under a single TCP flow while the worker is busy (the kernel then drops, and TCP backs off
/// hard); a deeper queue absorbs the bursts (this kernel has no TUN backpressure flag).
pub const TX_QUEUE_LEN: u32 = 2048;

/// An open TUN device.
pub struct Tun {
    /// The first queue (the only one of a single-queue device); also `queues[0]`.
    pub dev: Arc<SyncDevice>,
    /// Every queue of the device (one per worker when multi-queue, else one); the kernel
    /// steers each flow to one queue. The device goes away with the last handle if we
    /// created it.
    pub queues: Vec<Arc<SyncDevice>>,
    /// Device name.
    pub name: String,
    /// True when vtepd created the device (and so removes it on exit).
    pub created: bool,
    /// The device's MTU.
    pub mtu: u16,
    /// The device's interface index.
    pub ifindex: u32,
    /// For a device vtepd only attached to: what to put back once the queues are closed (after
    /// them, so dropped last).
    pub restore: Restore,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("mtu", &self.mtu)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .finish_non_exhaustive()
    }
}

/// Creates (or attaches to) the TUN device `name`: sets its MTU, its IPv6 (`ipv6`, see
/// `tun_ipv6`) and address, brings it up and
/// makes it non-blocking (see `device::configure`; an existing device is given back as it was
/// at exit, see [`Restore`]). With `offload`, every read and write carries a virtio-net header and
/// the kernel may hand over (and accept) TCP/UDP super-packets: read them with
/// `recv_multiple` and write with `send_multiple`.
///
/// With `queues > 1` the device is multi-queue with that many queues (each opened with the
/// same offload settings). An existing single-queue device cannot take more queues: it is
/// attached with one (and a warning), so callers must use `Tun::queues.len()`, not `queues`.
/// An existing multi-queue device is attached as such.
pub fn open_tun(
    name: &str,
    mtu: u16,
    address: Option<Ipv4Cidr>,
    ipv6: Ipv6Setup,
    offload: bool,
    queues: usize,
) -> Result<Tun, Failure> {
    let existed = interface_exists(name);
    if existed {
        in_use::refuse_if_held(name, 0)?;
    }
    let before = Restore::before(name, existed)?;
    let mut tun = open_tun_any(name, mtu, offload, existed, queues)?;
    tun.restore = Restore::new(before);
    // Another process may have attached meanwhile (two daemons started at once).
    in_use::refuse_if_held(name, tun.queues.len())?;
    let multi_queue = !existed && tun.queues.len() > 1;
    // Before the device goes up: a link-local address is made as it does.
    let index = super::netlink::ifindex(name)
        .map_err(|e| Failure::Runtime(format!("cannot find the index of {name}: {e}")))?;
    tun.restore.added6 = tun_ipv6::apply(name, index, ipv6)?;
    (tun.ifindex, tun.restore.added) = configure(&tun.name, multi_queue, address, false)?;
    Ok(tun)
}

fn open_tun_any(
    name: &str,
    mtu: u16,
    offload: bool,
    existed: bool,
    queues: usize,
) -> Result<Tun, Failure> {
    let queues = queues.max(1);
    let open = |n, multi_queue| open_tun_queues(name, mtu, offload, existed, n, multi_queue);
    match open(queues, queues > 1) {
        // The kernel refuses (EINVAL) a queue whose multi-queue flag differs from the device's.
        Err(Failure::Usage(_)) if existed && queues > 1 => {
            let tun = open(1, false)?;
            tracing::warn!(
                dev = %name,
                "existing device is not multi-queue: one queue only (its packets go to one worker)"
            );
            Ok(tun)
        }
        Err(Failure::Usage(e)) if existed => open(1, true).map_err(|_| Failure::Usage(e)),
        r => r,
    }
}

fn open_tun_queues(
    name: &str,
    mtu: u16,
    offload: bool,
    existed: bool,
    queues: usize,
    multi_queue: bool,
) -> Result<Tun, Failure> {
    // Address and state are vtepd's own work (`device::configure`).
    let dev = DeviceBuilder::new()
        .name(name.to_owned())
        .layer(Layer::L3)
        .mtu(mtu)
        .tx_queue_len(TX_QUEUE_LEN)
        .multi_queue(multi_queue)
        .offload(offload)
        .inherit_enable_state()
        .build_sync()
        .map_err(|e| tun_error(name, existed, &e))?;
    let nonblocking = |d: &SyncDevice| {
        d.set_nonblocking(true)
            .map_err(|e| Failure::Runtime(format!("cannot make {name} non-blocking: {e}")))
    };
    nonblocking(&dev)?;
    let mut all = Vec::with_capacity(queues);
    for _ in 1..queues {
        let q = dev
            .try_clone()
            .map_err(|e| Failure::Runtime(format!("cannot open another queue of {name}: {e}")))?;
        nonblocking(&q)?;
        all.push(Arc::new(q));
    }
    let dev = Arc::new(dev);
    all.insert(0, Arc::clone(&dev));
    Ok(Tun {
        dev,
        queues: all,
        name: name.to_owned(),
        created: !existed,
        mtu,
        ifindex: 0,
        restore: Restore::default(),
    })
}

impl From<Tun> for super::device::OwnedDevice {
    fn from(t: Tun) -> super::device::OwnedDevice {
        super::device::OwnedDevice::new(t.name, t.created, t.ifindex, t.queues, t.restore)
    }
}

fn tun_error(dev: &str, existed: bool, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::EPERM) => Failure::Runtime(format!(
            "cannot open TUN device {dev}: {e} (vtepd run needs root or CAP_NET_ADMIN)"
        )),
        Some(libc::EACCES) => Failure::Runtime(format!(
            "cannot open TUN device {dev}: {e} (vtepd's user must be able to open \
             /dev/net/tun: root, or mode 0666 as udev makes it)"
        )),
        Some(libc::EINVAL) if existed => Failure::Usage(format!(
            "device {dev} already exists and is not a TUN device vtepd can attach to"
        )),
        Some(libc::EBUSY) => in_use::held(dev, "it"),
        _ => Failure::Runtime(format!("cannot set up TUN device {dev}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::private_netns::{self, ip};
    use std::os::fd::AsRawFd;

    use super::super::device::{
        IPIP_MTU_OVERHEAD as IPIP_OVERHEAD, Underlay, overlay_mtu as l3_mtu,
    };
    use crate::config::MAX_MTU;

    #[test]
    fn mtu_derivation() {
        let u = Underlay {
            ifname: "eth0".into(),
            mtu: 1500,
        };
        assert_eq!(l3_mtu("t", None, &u, IPIP_OVERHEAD), Ok(1480));
        assert_eq!(l3_mtu("t", Some(1400), &u, IPIP_OVERHEAD), Ok(1400));
        let small = Underlay {
            ifname: "x".into(),
            mtu: 80,
        };
        assert_eq!(
            l3_mtu("t", None, &small, IPIP_OVERHEAD)
                .unwrap_err()
                .exit_code(),
            2
        );
        let jumbo = Underlay {
            ifname: "lo".into(),
            mtu: 65536,
        };
        assert_eq!(l3_mtu("t", None, &jumbo, IPIP_OVERHEAD), Ok(MAX_MTU));
    }

    /// In a private network namespace: a fresh device gets every queue asked for (with
    /// offloads on each), an existing single-queue device falls back to one queue, and an
    /// existing multi-queue device is attached as such.
    #[test]
    fn queues_in_a_private_namespace() {
        private_netns::run(|| {
            let tun = open_tun("vt-mq0", 1400, None, Ipv6Setup::Kernel, true, 3).unwrap();
            assert_eq!(tun.queues.len(), 3);
            assert!(tun.created);
            assert!(Arc::ptr_eq(&tun.dev, &tun.queues[0]));
            assert!(tun.queues.iter().all(|q| q.tcp_gso()));
            let fds: std::collections::HashSet<_> =
                tun.queues.iter().map(|q| q.as_raw_fd()).collect();
            assert_eq!(fds.len(), 3, "each queue is its own file");
            drop(tun);
            assert!(!interface_exists("vt-mq0"), "gone with its last queue");

            ip(&["tuntap", "add", "dev", "vt-sq0", "mode", "tun"]);
            let tun = open_tun("vt-sq0", 1400, None, Ipv6Setup::Kernel, false, 4).unwrap();
            assert_eq!(tun.queues.len(), 1);
            assert!(!tun.created);
            drop(tun);
            ip(&[
                "tuntap",
                "add",
                "dev",
                "vt-mq1",
                "mode",
                "tun",
                "multi_queue",
            ]);
            assert_eq!(
                open_tun("vt-mq1", 1400, None, Ipv6Setup::Kernel, false, 1)
                    .unwrap()
                    .queues
                    .len(),
                1
            );
            assert_eq!(
                open_tun("vt-mq1", 1400, None, Ipv6Setup::Kernel, false, 2)
                    .unwrap()
                    .queues
                    .len(),
                2
            );
        });
    }

    /// In a private network namespace (IPv6 on by default): `Off` turns the device's IPv6
    /// off; `Only` gives it the one address and no link-local one, even once up; an existing
    /// device gets its IPv6 settings and addresses back.
    #[test]
    fn ipv6_off_or_one_address_in_a_private_namespace() {
        private_netns::run(|| {
            let conf = |dev: &str, key: &str| {
                std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{dev}/{key}"))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            let addrs = |dev: &str| {
                let out = std::process::Command::new("ip")
                    .args(["-6", "addr", "show", "dev", dev])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let tun = open_tun("vt-v6off", 1400, None, Ipv6Setup::Off, false, 1).unwrap();
            assert_eq!(conf("vt-v6off", "disable_ipv6"), "1");
            drop(tun);
            let a: crate::config::Ipv6Cidr = "fd00:1::40/128".parse().unwrap();
            let tun = open_tun("vt-v6one", 1400, None, Ipv6Setup::Only(a), false, 1).unwrap();
            assert_eq!(conf("vt-v6one", "disable_ipv6"), "0");
            let shown = addrs("vt-v6one");
            assert!(shown.contains("fd00:1::40/128"), "{shown}");
            assert!(!shown.contains("fe80"), "a link-local address: {shown}");
            drop(tun);
            ip(&["tuntap", "add", "dev", "vt-v6had", "mode", "tun"]);
            let before = (
                conf("vt-v6had", "disable_ipv6"),
                conf("vt-v6had", "addr_gen_mode"),
            );
            let tun = open_tun("vt-v6had", 1400, None, Ipv6Setup::Only(a), false, 1).unwrap();
            assert_eq!(conf("vt-v6had", "addr_gen_mode"), "1");
            drop(tun);
            let after = (
                conf("vt-v6had", "disable_ipv6"),
                conf("vt-v6had", "addr_gen_mode"),
            );
            assert_eq!(after, before, "given back");
            assert!(
                !addrs("vt-v6had").contains("fd00:1::40"),
                "its address removed"
            );
        });
    }
}
