//! The L3 device: a TUN device (through `tun-rs`: layer 3, no packet-information header,
//! optionally with offloads: `IFF_VNET_HDR` with TSO/USO), with its MTU, optional address,
//! brought up and non-blocking.

use super::device::{Underlay, interface_exists};
use crate::cli::Failure;
use crate::config::{Ipv4Cidr, MAX_MTU, MIN_MTU};
use std::io;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

/// Bytes IPIP adds in front of an inner IPv4 packet (the outer IPv4 header).
pub const IPIP_OVERHEAD: u16 = 20;

/// Packets the kernel may queue for vtepd on the device. The TUN default (500) overflows
/// under a single TCP flow while the worker is busy (the kernel then drops, and TCP backs off
/// hard); a deeper queue absorbs the bursts (this kernel has no TUN backpressure flag).
pub const TX_QUEUE_LEN: u32 = 2048;

/// The MTU for an L3 device: `--mtu`, or the underlay MTU minus `overhead`.
pub fn l3_mtu(
    dev: &str,
    mtu: Option<u16>,
    underlay: &Underlay,
    overhead: u16,
) -> Result<u16, Failure> {
    if let Some(m) = mtu {
        return Ok(m);
    }
    let derived = underlay
        .mtu
        .saturating_sub(u32::from(overhead))
        .min(u32::from(MAX_MTU));
    u16::try_from(derived)
        .ok()
        .filter(|m| *m >= MIN_MTU)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "dev {dev}: underlay {} has MTU {}, which leaves {derived} for the overlay; give --mtu",
                underlay.ifname, underlay.mtu
            ))
        })
}

/// An open TUN device.
pub struct Tun {
    /// The device handle (the device goes away with the last handle if we created it).
    pub dev: Arc<SyncDevice>,
    /// Device name.
    pub name: String,
    /// True when vtepd created the device (and so removes it on exit).
    pub created: bool,
    /// The device's MTU.
    pub mtu: u16,
    /// The device's interface index.
    pub ifindex: u32,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("mtu", &self.mtu)
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

/// Creates (or attaches to) the TUN device `name`: sets its MTU and address, brings it up and
/// makes it non-blocking. With `offload`, every read and write carries a virtio-net header and
/// the kernel may hand over (and accept) TCP/UDP super-packets: read them with
/// `recv_multiple` and write with `send_multiple`.
pub fn open_tun(
    name: &str,
    mtu: u16,
    address: Option<Ipv4Cidr>,
    offload: bool,
) -> Result<Tun, Failure> {
    let existed = interface_exists(name);
    let mut b = DeviceBuilder::new()
        .name(name.to_owned())
        .layer(Layer::L3)
        .mtu(mtu)
        .tx_queue_len(TX_QUEUE_LEN)
        .offload(offload)
        .enable(true);
    if let Some(a) = address {
        b = b.ipv4(a.addr, a.prefix, None);
    }
    let dev = b.build_sync().map_err(|e| tun_error(name, existed, &e))?;
    dev.set_nonblocking(true)
        .map_err(|e| Failure::Runtime(format!("cannot make {name} non-blocking: {e}")))?;
    let ifindex = super::netlink::ifindex(name)
        .map_err(|e| Failure::Runtime(format!("cannot find the index of {name}: {e}")))?;
    Ok(Tun {
        dev: Arc::new(dev),
        name: name.to_owned(),
        created: !existed,
        mtu,
        ifindex,
    })
}

fn tun_error(dev: &str, existed: bool, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Failure::Runtime(format!(
            "cannot open TUN device {dev}: {e} (vtepd run needs root or CAP_NET_ADMIN)"
        )),
        Some(libc::EINVAL) if existed => Failure::Usage(format!(
            "device {dev} already exists and is not a TUN device vtepd can attach to"
        )),
        Some(libc::EBUSY) => Failure::Runtime(format!(
            "TUN device {dev} is busy (held by another process?)"
        )),
        _ => Failure::Runtime(format!("cannot set up TUN device {dev}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
