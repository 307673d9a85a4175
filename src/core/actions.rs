//! The caller-owned buffer the core writes its decisions into.

use super::{DropReason, NetId};
use encap::Vni;
use std::net::Ipv4Addr;

/// One thing the I/O layer must do with the frame or datagram it just gave the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Put a VXLAN header with `vni` in front of the local frame and send it to `dst`:UDP port.
    ToTunnel {
        /// VNI to write.
        vni: Vni,
        /// Remote VTEP.
        dst: Ipv4Addr,
    },
    /// Write `datagram[offset..]` (the inner frame) to network `net`'s device.
    ToDevice {
        /// Destination network.
        net: NetId,
        /// Start of the inner frame in the datagram.
        offset: usize,
    },
    /// Nothing to send; already counted under `reason`.
    Drop(DropReason),
}

/// A reusable list of [`Action`]s; cleared by the core at the start of every call, so its
/// capacity is kept and steady-state forwarding does not allocate.
#[derive(Debug, Default)]
pub struct Actions {
    items: Vec<Action>,
}

impl Actions {
    /// An empty buffer with room for `cap` actions.
    pub fn with_capacity(cap: usize) -> Actions {
        Actions {
            items: Vec::with_capacity(cap),
        }
    }
    /// Forgets all actions, keeping capacity.
    pub fn clear(&mut self) {
        self.items.clear();
    }
    /// Appends an action.
    pub fn push(&mut self, a: Action) {
        self.items.push(a);
    }
    /// The actions, in order.
    pub fn as_slice(&self) -> &[Action] {
        &self.items
    }
    /// Iterates over the actions.
    pub fn iter(&self) -> std::slice::Iter<'_, Action> {
        self.items.iter()
    }
    /// Number of actions.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
