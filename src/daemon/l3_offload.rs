//! Batched reads from an L3 TUN device opened with offloads (`IFF_VNET_HDR`, TSO/USO), and the
//! batch of encapsulated packets sent to the tunnel with one `sendmmsg` (the IPIP worker's
//! device -> tunnel half; writes to the device are `batch_gro`'s).
//!
//! Reading: the kernel may hand over a TCP/UDP super-packet (up to 64 KiB) with a virtio-net
//! header; tun-rs's `recv_multiple` splits it into MTU-sized segments (headers, lengths and
//! checksums rewritten per segment), each into its own slot with headroom for the outer
//! header, so every segment is encapsulated in place. Slots fill across several reads so that
//! one `sendmmsg` carries many packets.
//!
//! Hand-written around tun-rs rather than in it: tun-rs splits, but the slot arenas, the
//! headroom and the raw-socket batch are vtepd's. Everything here is allocated once.

use super::batch::{send_all, send_drop_reason};
use super::capture::WorkerCapture;
use super::io::{DatagramSocket, DeviceQueue};
use super::stats::Traffic;
use crate::core::{Counters, NetId, Remote};
use crate::sys::{MAX_BATCH, SendMsg};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use tun_rs::VIRTIO_NET_HDR_LEN;

/// Bytes of the outer IPv4 header of an IPIP packet vtepd sends.
const IPV4_HEADER: usize = 20;

/// Segment slots: enough that after a flush (at [`MAX_BATCH`] queued) a 64 KiB super-packet
/// cut at an MSS of 512 still fits in what is left.
pub const SEG_SLOTS: usize = MAX_BATCH + 128;
/// Largest packet tun-rs reads in one go (virtio-net header, then up to 64 KiB).
const RAW_LEN: usize = VIRTIO_NET_HDR_LEN + 65_536;

/// Segments read from the TUN device, each in its own slot behind `headroom` bytes.
pub struct TunReader {
    raw: Box<[u8]>,
    segs: Vec<Box<[u8]>>,
    sizes: Vec<usize>,
    filled: usize,
    headroom: usize,
}

impl std::fmt::Debug for TunReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunReader")
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl TunReader {
    /// Slots for packets of up to `mtu` bytes behind `headroom` bytes.
    pub fn new(mtu: u16, headroom: usize) -> TunReader {
        let slot = headroom + usize::from(mtu).max(1500) + 64;
        TunReader {
            raw: vec![0u8; RAW_LEN].into_boxed_slice(),
            segs: (0..SEG_SLOTS)
                .map(|_| vec![0u8; slot].into_boxed_slice())
                .collect(),
            sizes: vec![0; SEG_SLOTS],
            filled: 0,
            headroom,
        }
    }

    /// True when the slots are too few for another super-packet: flush, then [`clear`].
    ///
    /// [`clear`]: TunReader::clear
    pub fn needs_flush(&self) -> bool {
        self.filled >= MAX_BATCH
    }

    /// Frees every slot (after what referred to them was sent).
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Reads one packet or super-packet into the next free slots and returns their indices.
    /// An error with an OS code is the device's (WouldBlock: nothing waiting); one without
    /// is a super-packet tun-rs could not split (malformed header, too many segments).
    pub fn read(&mut self, dev: &impl DeviceQueue) -> io::Result<Range<usize>> {
        let start = self.filled;
        let n = dev.recv_segments(
            &mut self.raw,
            &mut self.segs[start..],
            &mut self.sizes[start..],
            self.headroom,
        )?;
        self.filled += n;
        Ok(start..start + n)
    }

    /// Slot `i` (headroom included) and the length of the packet behind the headroom.
    pub fn slot_mut(&mut self, i: usize) -> (&mut [u8], usize) {
        (&mut self.segs[i], self.sizes[i])
    }

    /// Slot `i`, whole.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.segs[i]
    }
}

/// One encapsulated packet waiting for `sendmmsg`: `slot[range]` to `dst`.
#[derive(Debug, Clone)]
struct Queued {
    slot: usize,
    range: Range<usize>,
    dst: Remote,
}

/// Encapsulated packets (in [`TunReader`] slots) queued for the tunnel socket.
#[derive(Debug)]
pub struct TunnelQueue {
    queued: Vec<Queued>,
}

impl Default for TunnelQueue {
    fn default() -> Self {
        TunnelQueue::new()
    }
}

impl TunnelQueue {
    /// An empty queue with room for every slot.
    pub fn new() -> TunnelQueue {
        TunnelQueue {
            queued: Vec::with_capacity(SEG_SLOTS),
        }
    }

    /// Queues `slot[range]` to `dst`.
    pub fn push(&mut self, slot: usize, range: Range<usize>, dst: Remote) {
        // Never more than one entry per slot, and the capacity is every slot: no allocation.
        self.queued.push(Queued { slot, range, dst });
    }

    /// Sends everything queued on `sock` (`sendmmsg`, up to [`MAX_BATCH`] a call); each packet
    /// the kernel refuses is counted with its reason and reported to `on_error`. Counts sent
    /// packets as `tx_tunnel` (their inner bytes, without the outer IPv4 header, as
    /// `tx_tunnel_bytes`), and into `traffic` as network 0's. The queue is empty afterwards.
    pub fn flush(
        &mut self,
        reader: &TunReader,
        sock: &impl DatagramSocket,
        capture: &WorkerCapture,
        ctr: &mut Counters,
        traffic: &Traffic,
        mut on_error: impl FnMut(Remote, &io::Error),
    ) {
        let mut msgs = [SendMsg {
            head: &[],
            body: &[],
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }; MAX_BATCH];
        for chunk in self.queued.chunks(MAX_BATCH) {
            for (m, q) in msgs.iter_mut().zip(chunk) {
                *m = SendMsg {
                    head: &[],
                    body: &reader.slot(q.slot)[q.range.clone()],
                    dst: q.dst.ip(),
                };
            }
            let mut bytes = 0;
            let done = send_all(
                sock,
                capture,
                &msgs[..chunk.len()],
                |_| false,
                &mut |i, e| {
                    ctr.drop(send_drop_reason(e));
                    if let Some(q) = chunk.get(i) {
                        on_error(q.dst, e);
                    }
                },
                &mut |i| {
                    if let Some(q) = chunk.get(i) {
                        // The outer header encap writes has no options.
                        let inner = q.range.len().saturating_sub(IPV4_HEADER) as u64;
                        bytes += inner;
                        traffic.tunnel_tx(NetId(0), q.dst, 1, inner);
                    }
                },
            );
            ctr.tx_tunnel += done.sent;
            ctr.tx_tunnel_bytes += bytes;
        }
        self.queued.clear();
    }
}
