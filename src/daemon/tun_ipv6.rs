//! A TUN device's IPv6 as IPIP wants it: off, or one address of vtepd's and nothing the kernel
//! makes up itself, so that the kernel sends no chatter of its own into the device (which would
//! only end up as drops: vtepd has no route for it).
//!
//! - No IPv6 address given: `disable_ipv6` on the device. The kernel then has no IPv6 on it at
//!   all: no link-local address, no router solicitations, no MLD reports, and no IPv6 route
//!   can point at it.
//! - An address given: `addr_gen_mode none` before the device goes up, so it gets no
//!   link-local address (and so sends no router solicitations or MLD reports from one), and
//!   then that address. A TUN device is `IFF_NOARP`, for which the kernel does no duplicate
//!   address detection and joins no solicited-node group. What is left are the MLD reports
//!   for the groups the host joins on every IPv6 device (all-routers when it forwards), sent
//!   from `::` (measured: no `IFF_MULTICAST` flag or per-device sysctl stops them without
//!   stopping forwarding); the engine drops IPv6 multicast under the quiet reason
//!   `ipv6_multicast` (counted, left out of the periodic drop log).
//!
//! Both are per-device sysctls (`/proc/sys/net/ipv6/conf/DEV/`), read in the caller's network
//! namespace; a device vtepd attached to gets its values back on exit.

use super::link;
use crate::config::Ipv6Cidr;
use crate::error::Failure;
use std::io;

/// What a device's IPv6 is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Setup {
    /// Left as the kernel makes it.
    Kernel,
    /// Turned off.
    Off,
    /// This address and no link-local one.
    Only(Ipv6Cidr),
}

/// The two sysctls as they were, to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Before {
    disable_ipv6: String,
    addr_gen_mode: String,
}

const DISABLE: &str = "disable_ipv6";
const GEN_MODE: &str = "addr_gen_mode";
/// `addr_gen_mode` value: no link-local address (`IN6_ADDR_GEN_MODE_NONE`).
const GEN_MODE_NONE: &str = "1";

fn path(dev: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{dev}/{key}")
}

fn write(dev: &str, key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(dev, key), value)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot set {key} of {dev}: {e}")))
}

impl Ipv6Before {
    /// The device's values now; `None` when the namespace has no IPv6 (nothing to change).
    pub fn read(dev: &str) -> Option<Ipv6Before> {
        let read = |k| std::fs::read_to_string(path(dev, k)).ok();
        Some(Ipv6Before {
            disable_ipv6: read(DISABLE)?.trim().to_owned(),
            addr_gen_mode: read(GEN_MODE)?.trim().to_owned(),
        })
    }

    /// Puts the values back.
    pub fn put_back(&self, dev: &str) -> io::Result<()> {
        write(dev, GEN_MODE, &self.addr_gen_mode)?;
        write(dev, DISABLE, &self.disable_ipv6)
    }
}

/// Makes the IPv6 of device `dev` (interface `index`, not yet up) what `setup` says; returns
/// the address it added (`None`: none asked, or the device had it).
pub fn apply(dev: &str, index: u32, setup: Ipv6Setup) -> Result<Option<Ipv6Cidr>, Failure> {
    let fail = |e: io::Error| Failure::Runtime(format!("device {dev}: {e}"));
    let has_ipv6 = Ipv6Before::read(dev).is_some();
    match setup {
        Ipv6Setup::Kernel => Ok(None),
        // Without IPv6 in the namespace there is nothing to turn off.
        Ipv6Setup::Off if !has_ipv6 => Ok(None),
        Ipv6Setup::Off => write(dev, DISABLE, "1").map(|()| None).map_err(fail),
        Ipv6Setup::Only(a) => {
            if !has_ipv6 {
                return Err(Failure::Runtime(format!(
                    "device {dev}: cannot add {a}: this network namespace has no IPv6"
                )));
            }
            write(dev, GEN_MODE, GEN_MODE_NONE).map_err(fail)?;
            write(dev, DISABLE, "0").map_err(fail)?;
            let added = link::add_address6(index, a)
                .map_err(|e| Failure::Runtime(format!("cannot add address {a} to {dev}: {e}")))?;
            Ok(added.then_some(a))
        }
    }
}
