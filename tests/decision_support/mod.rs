//! The core's decisions as records in one list (`Action`), so tests of the L2 core can state what
//! a dataplane would do with a packet as one expectation. Include it with `mod decision_support;`.

#![allow(dead_code)]

use encap::Vni;
use std::net::IpAddr;
use vtepd::core::{DropReason, FromDevice, FromTunnel, NetId, Remotes};

/// What a dataplane does with a packet, one record per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Encapsulate with `vni` and send to `dst`.
    ToTunnel { vni: Vni, dst: IpAddr },
    /// Write `datagram[offset..]` to network `net`'s device.
    ToDevice { net: NetId, offset: usize },
    /// Nothing sent; counted under the reason.
    Drop(DropReason),
}

/// A device-frame decision with the remotes it left in `to`: one `ToTunnel` per remote in
/// order, each with `to.vni()`. A drop comes first, followed by any remote `to` still lists
/// (none: the core resets `to` on every call, so a stale remote shows up as an extra record).
pub fn device_actions(d: FromDevice, to: &Remotes) -> Vec<Action> {
    let copies = to.as_slice().iter().map(|&dst| Action::ToTunnel {
        vni: to.vni(),
        dst: dst.ip(),
    });
    match d {
        FromDevice::Tunnel => copies.collect(),
        FromDevice::Drop(r) => std::iter::once(Action::Drop(r)).chain(copies).collect(),
        other => panic!("the L2 core decided {other:?} for a device frame"),
    }
}

/// A tunnel-datagram decision for a datagram of `len` bytes: a delivery must be of the rest
/// of the datagram from its offset (`offset..len`).
pub fn tunnel_actions(d: FromTunnel, len: usize) -> Vec<Action> {
    match d {
        FromTunnel::Deliver { net, range } => {
            assert_eq!(
                range.end, len,
                "delivery does not run to the datagram's end"
            );
            vec![Action::ToDevice {
                net,
                offset: range.start,
            }]
        }
        FromTunnel::Drop(r) => vec![Action::Drop(r)],
        FromTunnel::Consumed => panic!("the L2 core consumed a datagram"),
    }
}
