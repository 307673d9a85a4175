//! What a dataplane worker does to its device queue and its underlay socket, as two small batch
//! traits, so the same worker runs on real devices and sockets ([`SyncDevice`], socket2's
//! [`Socket`]) and, in tests, on the in-memory ones of [`mem`] (the way wireguard-go drives its
//! whole device in memory with `tun/tuntest` and `conn/bindtest`).

use super::batch_gro::PacketWrite;
use crate::sys::{self, RecvMeta, SendMsg};
use socket2::Socket;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use tun_rs::SyncDevice;

pub mod mem;

/// A device queue (a TAP or TUN file) as a worker uses it. Reads and writes carry a
/// virtio-net header when the device has offloads ([`DeviceQueue::tcp_gso`]).
pub trait DeviceQueue: PacketWrite + Send + Sync + 'static {
    /// Reads one packet (or TSO super-packet) into `buf`; `WouldBlock` when none is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one packet.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Reads one packet or super-packet into `raw` and splits it into MSS-sized segments, each
    /// into `bufs[i][offset..]` with its length in `sizes[i]` (tun-rs's `recv_multiple`);
    /// returns how many. An error without an OS code: a super-packet that could not be split.
    fn recv_segments(
        &self,
        raw: &mut [u8],
        bufs: &mut [Box<[u8]>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize>;
    /// Whether the device has virtio-net headers with TCP segmentation offload.
    fn tcp_gso(&self) -> bool;
    /// The file descriptor to poll for reading.
    fn fd(&self) -> RawFd;
}

impl DeviceQueue for SyncDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        SyncDevice::recv(self, buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        SyncDevice::send(self, buf)
    }
    fn recv_segments(
        &self,
        raw: &mut [u8],
        bufs: &mut [Box<[u8]>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.recv_multiple(raw, bufs, sizes, offset)
    }
    fn tcp_gso(&self) -> bool {
        // tun-rs's own (on the device behind the handle).
        std::ops::Deref::deref(self).tcp_gso()
    }
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// An underlay socket as a worker uses it: datagrams in and out in batches.
pub trait DatagramSocket: Send + 'static {
    /// Receives up to `meta.len()` datagrams (one `recvmmsg`): datagram `i` into
    /// `arena[i * slot..]`, described by `meta[i]`; `WouldBlock` when none was waiting. Also
    /// the socket's latest receive-queue overflow count, when it reports one.
    fn recv_batch(
        &self,
        arena: &mut [u8],
        slot: usize,
        meta: &mut [RecvMeta],
    ) -> io::Result<(usize, Option<u32>)>;
    /// Sends a prefix of `msgs` (one `sendmmsg`); how many went, or the first one's error.
    fn send_batch(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize>;
    /// Reads the errors queued about earlier sends (ICMP errors that came back, local
    /// EMSGSIZE), handing each to `on`; how many.
    fn drain_errors(&self, on: &mut dyn FnMut(sys::QueuedError)) -> io::Result<usize> {
        let _ = on;
        Ok(0)
    }
    /// The count of datagrams dropped because the receive queue was full, if the socket keeps
    /// one.
    fn queue_drops(&self) -> io::Result<Option<u32>> {
        Ok(None)
    }
    /// The file descriptor to poll for reading.
    fn fd(&self) -> RawFd;
}

/// The real sockets: `recvmmsg` and `sendmmsg` (see [`sys`]).
macro_rules! kernel_socket {
    ($($t:ty),*) => {$(
        impl DatagramSocket for $t {
            fn recv_batch(
                &self,
                arena: &mut [u8],
                slot: usize,
                meta: &mut [RecvMeta],
            ) -> io::Result<(usize, Option<u32>)> {
                sys::recv_batch(self, arena, slot, meta)
            }
            fn send_batch(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
                sys::send_batch(self, msgs)
            }
            fn drain_errors(&self, on: &mut dyn FnMut(sys::QueuedError)) -> io::Result<usize> {
                sys::drain_error_queue(self, on)
            }
            fn queue_drops(&self) -> io::Result<Option<u32>> {
                sys::socket_drops(self).map(Some)
            }
            fn fd(&self) -> RawFd {
                self.as_raw_fd()
            }
        }
    )*};
}

kernel_socket!(Socket, std::net::UdpSocket);

impl PacketWrite for SyncDevice {
    fn write_packet(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send_vectored(iov)
    }
}

/// A socket shared with whoever else holds it (a test that looks at what a worker sent).
impl<T: DatagramSocket + Sync> DatagramSocket for std::sync::Arc<T> {
    fn recv_batch(
        &self,
        arena: &mut [u8],
        slot: usize,
        meta: &mut [RecvMeta],
    ) -> io::Result<(usize, Option<u32>)> {
        (**self).recv_batch(arena, slot, meta)
    }
    fn send_batch(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
        (**self).send_batch(msgs)
    }
    fn drain_errors(&self, on: &mut dyn FnMut(sys::QueuedError)) -> io::Result<usize> {
        (**self).drain_errors(on)
    }
    fn queue_drops(&self) -> io::Result<Option<u32>> {
        (**self).queue_drops()
    }
    fn fd(&self) -> RawFd {
        (**self).fd()
    }
}
