//! A worker's handle on one device queue, shared by every mode's dataplane: writes packets
//! (behind a zero virtio-net header when the device has offloads), counts what was written or
//! lost, logs failures at most once per period, and turns a vanished device into the one reason
//! that ends the worker, whichever way it was noticed (a read, a write, a refused super-packet).
//! [`deliver`] and [`flush_run`] hand what the engine delivered to the device, runs of TCP
//! segments coalesced into one GSO write.

use super::batch::RecvBatch;
use super::batch_gro::{self, Framing, Part, Partial, TcpRun, VNET_HDR_NONE};
use super::io::DeviceQueue;
use super::ratelimit::RateLimit;
use super::stats::Traffic;
use crate::core::arp::{FrameTo, Generated};
use crate::core::{Counters, DropReason, NetId, Timestamp};
use std::io::{self, IoSlice};
use std::sync::Arc;
use tracing::warn;

/// A worker's port on one device queue.
pub struct DevPort<D> {
    /// The queue.
    pub dev: Arc<D>,
    /// The device's name, for messages.
    pub name: String,
    /// Every packet read or written carries a virtio-net header (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// Whether this worker reads the queue (a queue is read by exactly one worker; when a
    /// device has fewer queues than workers, the others only write to a shared one).
    pub read: bool,
    err_log: RateLimit,
    /// Set when a write found the device gone: the reason the worker ends.
    gone: Option<String>,
    /// The worker's traffic cells, and the network whose device this is.
    traffic: Arc<Traffic>,
    net: NetId,
}

impl<D> std::fmt::Debug for DevPort<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPort")
            .field("name", &self.name)
            .field("vnet_hdr", &self.vnet_hdr)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// The one-line reason an I/O error on device `name` ends a worker (`op`: "read from", ...).
pub fn device_failed(name: &str, op: &str, e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::EBADFD) {
        format!("device {name} was removed ({op} it: {e})")
    } else {
        format!("device {name} failed ({op} it: {e})")
    }
}

impl<D: DeviceQueue> DevPort<D> {
    /// A port on queue `dev` of device `name`.
    pub fn new(dev: Arc<D>, name: &str, vnet_hdr: bool, read: bool) -> DevPort<D> {
        DevPort {
            dev,
            name: name.to_owned(),
            vnet_hdr,
            read,
            err_log: RateLimit::default(),
            gone: None,
            traffic: Traffic::detached(),
            net: NetId(0),
        }
    }

    /// Counts what is written (and lost) here as network `net`'s, into `traffic`.
    pub fn attach(&mut self, traffic: Arc<Traffic>, net: NetId) {
        self.traffic = traffic;
        self.net = net;
    }

    /// The worker's traffic cells this port counts into.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The network whose device this is.
    pub fn net(&self) -> NetId {
        self.net
    }

    /// Writes one whole packet (`None`: a place that held none, counted lost) and counts it.
    pub fn write(&mut self, now: Timestamp, packet: Option<&[u8]>, ctr: &mut Counters) {
        self.write_partial(now, packet, None, ctr);
    }

    /// [`write`](DevPort::write) for a packet whose checksum its sender may have left partial
    /// (`partial`): with a virtio-net header it goes as checksum partial (the kernel completes
    /// the checksum if the packet leaves the host), without one the checksum is completed here.
    pub fn write_partial(
        &mut self,
        now: Timestamp,
        packet: Option<&[u8]>,
        partial: Option<Partial>,
        ctr: &mut Counters,
    ) {
        let Some(packet) = packet else {
            return ctr.drop(DropReason::DeviceTxError);
        };
        let r = match partial {
            None if self.vnet_hdr => self
                .dev
                .write_packet(&[IoSlice::new(&VNET_HDR_NONE), IoSlice::new(packet)]),
            None => self.dev.send(packet),
            Some(p) if self.vnet_hdr => self.dev.write_packet(&[
                IoSlice::new(&batch_gro::partial_header(p)),
                IoSlice::new(packet),
            ]),
            Some(p) => {
                // The packet stays where it is; the completed checksum goes in its place.
                let field = p.start + p.offset;
                match (packet.get(..field), packet.get(field + 2..)) {
                    (Some(head), Some(tail)) => {
                        let c = p.complete(packet).to_be_bytes();
                        let iov = [IoSlice::new(head), IoSlice::new(&c), IoSlice::new(tail)];
                        self.dev.write_packet(&iov)
                    }
                    // Not reached: the core took the option with its field inside the frame.
                    _ => self.dev.send(packet),
                }
            }
        };
        match r {
            Ok(_) => {
                ctr.tx_device += 1;
                ctr.tx_device_bytes += packet.len() as u64;
                self.traffic.device_tx(self.net, 1, packet.len() as u64);
            }
            Err(e) => self.write_failed(now, &e, 1, ctr),
        }
    }

    /// Writes a packet given with its own virtio-net header (a GSO super-packet) and counts it.
    pub fn write_vnet(&mut self, now: Timestamp, iov: &[IoSlice<'_>], ctr: &mut Counters) {
        match self.dev.write_packet(iov) {
            Ok(n) => {
                let bytes = n.saturating_sub(batch_gro::VNET_HDR_LEN) as u64;
                ctr.tx_device += 1;
                ctr.tx_device_bytes += bytes;
                self.traffic.device_tx(self.net, 1, bytes);
            }
            Err(e) => self.write_failed(now, &e, 1, ctr),
        }
    }

    /// Counts `count` packets lost to the failed write `e`, logs it (rate-limited) and notes a
    /// device that is gone (EBADFD: anything else, EIO while it is down..., loses these only).
    pub fn write_failed(&mut self, now: Timestamp, e: &io::Error, count: u64, ctr: &mut Counters) {
        ctr.drops[DropReason::DeviceTxError as usize] += count;
        self.traffic
            .dropped_n(self.net, DropReason::DeviceTxError, count);
        if let Some(held) = self.err_log.check(now) {
            warn!(dev = %self.name, error = %e, suppressed = held, "write to device failed");
        }
        if e.raw_os_error() == Some(libc::EBADFD) && self.gone.is_none() {
            self.gone = Some(device_failed(&self.name, "write to", e));
        }
    }

    /// The reason a failed read ends the worker.
    pub fn read_failed(&self, e: &io::Error) -> String {
        device_failed(&self.name, "read from", e)
    }

    /// Logs (rate-limited) a read that lost one packet without ending the worker.
    pub fn read_lost(&mut self, now: Timestamp, e: &io::Error) {
        if let Some(held) = self.err_log.check(now) {
            warn!(dev = %self.name, error = %e, suppressed = held, "cannot take a packet from the device");
        }
    }

    /// Writes the engine's answers for the device (`FrameTo::Device` frames: ARP replies on
    /// behalf of remote hosts, ICMP errors for a sender) and empties the buffer.
    pub fn write_answers(&mut self, now: Timestamp, out: &mut Generated, ctr: &mut Counters) {
        for (to, packet) in out.iter() {
            if to == FrameTo::Device {
                self.write(now, Some(packet), ctr);
            }
        }
        out.clear();
    }

    /// Writes the device-bound frames of `out` from the `from`-th on (answers made after
    /// `from` frames were already waiting) and forgets them; the earlier ones stay.
    pub fn write_answers_from(
        &mut self,
        now: Timestamp,
        out: &mut Generated,
        from: usize,
        ctr: &mut Counters,
    ) {
        for (to, packet) in out.iter().skip(from) {
            if to == FrameTo::Device {
                self.write(now, Some(packet), ctr);
            }
        }
        out.truncate(from);
    }

    /// `Err` with the reason to end the worker once a write found the device gone.
    pub fn check(&self) -> Result<(), String> {
        self.gone.as_ref().map_or(Ok(()), |g| Err(g.clone()))
    }
}

/// A worker's device ports by key (its `NetId`): L3's one port, or L2's slots, where a network
/// removed at run time leaves its slot empty (ids keep their places).
pub trait Ports<D> {
    /// The port of `key`.
    fn port(&self, key: u16) -> Option<&DevPort<D>>;
    /// The port of `key`, to write to.
    fn port_mut(&mut self, key: u16) -> Option<&mut DevPort<D>>;
}

impl<D, const N: usize> Ports<D> for [DevPort<D>; N] {
    fn port(&self, key: u16) -> Option<&DevPort<D>> {
        self.get(usize::from(key))
    }
    fn port_mut(&mut self, key: u16) -> Option<&mut DevPort<D>> {
        self.get_mut(usize::from(key))
    }
}

impl<D> Ports<D> for Vec<Option<DevPort<D>>> {
    fn port(&self, key: u16) -> Option<&DevPort<D>> {
        self.get(usize::from(key))?.as_ref()
    }
    fn port_mut(&mut self, key: u16) -> Option<&mut DevPort<D>> {
        self.get_mut(usize::from(key))?.as_mut()
    }
}

/// Writes the pending run of TCP segments to its port (`ports[key]`): several as one GSO
/// super-packet (one by one if the kernel refuses it), a single one as it is. `bytes` finds the
/// packet at a place of the caller's receive batch.
pub fn flush_run<'a, D: DeviceQueue>(
    run: &mut TcpRun,
    ports: &mut impl Ports<D>,
    bytes: impl Fn(Part) -> Option<&'a [u8]>,
    now: Timestamp,
    ctr: &mut Counters,
) {
    let run_key = run.key();
    let flushed = run.flush(|k| ports.port(k).map(|p| &*p.dev), &bytes);
    if let super::batch_gro::Flushed::Merged { count, bytes } = &flushed
        && let Some(p) = ports.port(run_key)
    {
        p.traffic.device_tx(p.net, *count as u64, *bytes as u64);
    }
    if let super::batch_gro::Flushed::Refused { key, error, .. } = &flushed
        && error.raw_os_error() == Some(libc::EBADFD)
        && let Some(p) = ports.port_mut(*key)
    {
        // Counted by `settle`; noted here so the worker ends.
        p.write_failed(now, error, 0, ctr);
    }
    let (key, singles) = run.settle(flushed, ctr);
    let Some(port) = ports.port_mut(key) else {
        ctr.drops[DropReason::UnknownNetwork as usize] += singles as u64;
        return;
    };
    for k in 0..singles {
        let part = run.flushed(singles)[k];
        port.write_partial(now, bytes(part), run.flushed_partial(k), ctr);
    }
}

/// Where the sender of the VXLAN datagram that holds `part` (the inner frame, or the packet in
/// it) left its checksum partial (remote checksum offload), if it did.
pub fn vxlan_partial(batch: &RecvBatch, (i, from): Part) -> Option<Partial> {
    batch
        .get(i)
        .and_then(|(d, _)| Partial::of_datagram(d, from))
}

/// Hands the packet at `part` of the receive batch `batch` to port `key`: a TCP segment that
/// continues the pending run joins it (one that does not starts a new run, after the old one is
/// written); anything else is written as it is, after the run. `partial`: where its sender left
/// its checksum partial, if it did ([`vxlan_partial`]).
#[allow(clippy::too_many_arguments)]
pub fn deliver<D: DeviceQueue>(
    run: &mut TcpRun,
    ports: &mut impl Ports<D>,
    batch: &RecvBatch,
    (key, part): (u16, Part),
    partial: Option<Partial>,
    framing: Framing,
    now: Timestamp,
    ctr: &mut Counters,
) {
    let Some(vnet_hdr) = ports.port(key).map(|p| p.vnet_hdr) else {
        return ctr.drop(DropReason::UnknownNetwork);
    };
    if partial.is_some() {
        ctr.rx_remote_csum += 1;
    }
    let packet = batch.at(part);
    let seg = match packet {
        Some(p) if vnet_hdr => batch_gro::tcp_segment_of(p, framing, partial),
        _ => None,
    };
    let bytes = |p: Part| batch.at(p);
    match seg {
        Some(seg) if run.offer(key, part, &seg, bytes) => {}
        Some(seg) => {
            flush_run(run, ports, bytes, now, ctr);
            run.start(key, part, &seg);
        }
        None => {
            flush_run(run, ports, bytes, now, ctr);
            if let Some(p) = ports.port_mut(key) {
                p.write_partial(now, packet, partial, ctr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::io::mem::MemDevice;

    /// A UDP/IPv4 packet (10.0.0.1 -> 10.0.0.2, "hi") whose checksum field holds the
    /// pseudo-header sum, as a sender that left it partial writes it, and where it is.
    fn partial_udp() -> (Vec<u8>, Partial) {
        let mut pkt = vec![0u8; 20];
        pkt[0] = 0x45;
        pkt[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        pkt.extend_from_slice(&[0, 1, 0, 2, 0, 10, 0, 0, b'h', b'i']);
        let pseudo =
            encap::checksum::pseudo_header([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 10);
        pkt[26..28].copy_from_slice(&encap::checksum::fold(pseudo).to_be_bytes());
        (
            pkt,
            Partial {
                start: 20,
                offset: 6,
            },
        )
    }

    /// With a virtio-net header the packet goes as it is, marked checksum partial at its
    /// place; without one vtepd completes the checksum (the packet itself unchanged).
    #[test]
    fn a_partial_checksum_is_marked_or_completed() {
        let (pkt, p) = partial_udp();
        let now = Timestamp(0);
        let mut ctr = Counters::default();
        let dev = Arc::new(MemDevice::new(4, true).unwrap());
        let mut port = DevPort::new(Arc::clone(&dev), "t", true, true);
        port.write_partial(now, Some(&pkt), Some(p), &mut ctr);
        let mut got = Vec::new();
        dev.take_written(|w| got.push(w.to_vec()));
        let want: Vec<u8> = [&[1u8, 0, 0, 0, 0, 0, 20, 0, 6, 0][..], &pkt].concat();
        assert_eq!(got, [want]);

        let dev = Arc::new(MemDevice::new(4, false).unwrap());
        let mut port = DevPort::new(Arc::clone(&dev), "t", false, true);
        port.write_partial(now, Some(&pkt), Some(p), &mut ctr);
        let mut got = Vec::new();
        dev.take_written(|w| got.push(w.to_vec()));
        assert_eq!(got.len(), 1);
        let w = &got[0];
        assert_eq!((&w[..26], &w[28..]), (&pkt[..26], &pkt[28..]));
        let pseudo =
            encap::checksum::pseudo_header([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 10);
        let all = encap::checksum::add(pseudo, encap::checksum::sum(&w[20..]));
        assert_eq!(
            encap::checksum::fold(all),
            0xffff,
            "the completed checksum verifies"
        );
        assert_eq!((ctr.tx_device, ctr.total_drops()), (2, 0));
    }
}
