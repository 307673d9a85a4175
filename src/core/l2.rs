//! The L2 VXLAN engine: the core's flood-and-learn forwarding between TAP devices and VXLAN,
//! with ARP and ND suppression, in the engines' one calling convention (see [`super::engine`]).
//! Shared by the workers (`Arc`).

use super::arp_suppress::ArpSuppress;
use super::nd_suppress::NdSuppress;
use super::trace::{NoTrace, Trace};
use super::{Core, Counters, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp};
use std::sync::Arc;

/// The L2 VXLAN engine over a shared [`Core`].
#[derive(Debug)]
pub struct L2 {
    core: Arc<Core>,
    arp: ArpSuppress,
    nd: NdSuppress,
}

impl L2 {
    /// The engine of `core`'s networks; `arp_suppress[i]` turns ARP and ND suppression on for
    /// `NetId(i)`.
    pub fn new(core: Arc<Core>, arp_suppress: Vec<bool>) -> L2 {
        let arp = ArpSuppress::new(Arc::clone(&core), arp_suppress);
        let nd = NdSuppress::new(Arc::clone(&core));
        L2 { core, arp, nd }
    }

    /// The core.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// A VXLAN datagram (UDP payload) from the underlay: [`Core::on_remote`], and ARP and ND
    /// crossing the tunnel teach suppression its bindings.
    pub fn on_remote(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        ctr: &mut Counters,
    ) -> FromTunnel {
        self.on_remote_traced(now, outer, datagram, ctr, &mut NoTrace)
    }

    /// [`L2::on_remote`], its steps recorded into `t` (a simulation changes no state).
    pub fn on_remote_traced<T: Trace>(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let v = self.core.on_remote_traced(now, outer, datagram, ctr, t);
        if let FromTunnel::Deliver { net, range } = &v
            && let Some(frame) = datagram.get(range.clone())
        {
            self.arp.snoop_remote_traced(now, *net, frame, ctr, t);
            self.nd.snoop_remote_traced(now, *net, frame, ctr, t);
        }
        v
    }

    /// A frame from network `net`'s TAP device: a broadcast ARP request or a multicast
    /// neighbour solicitation for a known remote address is answered into the device
    /// ([`FromDevice::Answered`]); anything else is forwarded by [`Core::on_local`] to the
    /// remotes in `out.remotes`.
    pub fn on_local(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Out,
        ctr: &mut Counters,
    ) -> FromDevice {
        self.on_local_traced(now, net, frame, out, ctr, &mut NoTrace)
    }

    /// [`L2::on_local`], its steps recorded into `t` (a simulation changes no state).
    pub fn on_local_traced<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        if self
            .arp
            .answer_local_traced(now, net, frame, &mut out.generated, ctr, t)
            || self
                .nd
                .answer_local_traced(now, net, frame, &mut out.generated, ctr, t)
        {
            ctr.rx_device += 1;
            return FromDevice::Answered;
        }
        self.core
            .on_local_traced(now, net, frame, &mut out.remotes, ctr, t)
    }
}
