//! In-memory device queues and sockets for tests: a worker built on them runs its real
//! dataplane code with no kernel, no privilege and no timing. A test queues packets to be read
//! ([`MemDevice::inject`], [`MemSocket::inject`]), calls the worker's `drain`, and looks at
//! what it wrote ([`MemDevice::take_written`], [`MemSocket::take_sent`]).
//!
//! Neither allocates once made: every packet is copied into one of a fixed set of buffers
//! made up front and given back when consumed, so the counting-allocator test can run a worker
//! through them. A queue that is full refuses more (`inject` returns false; a write or send
//! fails with `ENOBUFS`, as a full kernel queue would).

use super::{DatagramSocket, DeviceQueue, PacketWrite};
use crate::sys::{RecvMeta, SendMsg};
use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSlice};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Largest packet the in-memory queues hold.
pub const MEM_PACKET: usize = 65_600;

/// A packet in a queue: its bytes (in a reused buffer), where from or to, and the outer TOS.
#[derive(Debug)]
struct Slot {
    buf: Box<[u8]>,
    len: usize,
    peer: IpAddr,
    tos: u8,
}

/// Packets waiting in one direction, in fixed buffers.
#[derive(Debug)]
struct Queue {
    packets: VecDeque<Slot>,
    free: Vec<Box<[u8]>>,
}

impl Queue {
    fn new(depth: usize) -> Queue {
        Queue {
            packets: VecDeque::with_capacity(depth),
            free: (0..depth)
                .map(|_| vec![0u8; MEM_PACKET].into_boxed_slice())
                .collect(),
        }
    }

    /// Queues the concatenation of `parts`; false when the queue is full or it is too long.
    fn push(&mut self, parts: &[&[u8]], peer: IpAddr, tos: u8) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MEM_PACKET {
            return false;
        }
        let Some(mut buf) = self.free.pop() else {
            return false;
        };
        let mut at = 0;
        for p in parts {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.packets.push_back(Slot {
            buf,
            len,
            peer,
            tos,
        });
        true
    }

    /// Hands the oldest packet to `f` and gives its buffer back.
    fn pop<R>(&mut self, f: impl FnOnce(&[u8], IpAddr, u8) -> R) -> Option<R> {
        let s = self.packets.pop_front()?;
        let r = f(&s.buf[..s.len], s.peer, s.tos);
        self.free.push(s.buf);
        Some(r)
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A file descriptor for the event loop to register (never readable: tests call `drain`).
fn idle_fd() -> io::Result<UnixDatagram> {
    let (a, _b) = UnixDatagram::pair()?;
    Ok(a)
}

/// An in-memory device queue (a TAP or TUN queue).
#[derive(Debug)]
pub struct MemDevice {
    to_read: Mutex<Queue>,
    written: Mutex<Queue>,
    vnet_hdr: bool,
    removed: std::sync::atomic::AtomicBool,
    fd: UnixDatagram,
}

impl MemDevice {
    /// A queue holding up to `depth` packets each way; `vnet_hdr`: packets carry virtio-net
    /// headers (a device opened with offloads).
    pub fn new(depth: usize, vnet_hdr: bool) -> io::Result<MemDevice> {
        Ok(MemDevice {
            to_read: Mutex::new(Queue::new(depth)),
            written: Mutex::new(Queue::new(depth)),
            vnet_hdr,
            removed: std::sync::atomic::AtomicBool::new(false),
            fd: idle_fd()?,
        })
    }

    /// Queues a packet for the worker to read (behind a zero virtio-net header when the device
    /// has offloads, as the kernel hands a packet that needs nothing done). False when full.
    pub fn inject(&self, packet: &[u8]) -> bool {
        let vnet = [0u8; super::super::batch_gro::VNET_HDR_LEN];
        let parts: &[&[u8]] = if self.vnet_hdr {
            &[&vnet, packet]
        } else {
            &[packet]
        };
        lock(&self.to_read).push(parts, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }

    /// Queues a packet as read with its own virtio-net header `vnet` (a TSO super-packet).
    pub fn inject_with_header(&self, vnet: &[u8], packet: &[u8]) -> bool {
        lock(&self.to_read).push(&[vnet, packet], IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }

    /// Hands every packet the worker wrote (its virtio-net header included) to `f`, oldest
    /// first, and forgets them; returns how many.
    pub fn take_written(&self, mut f: impl FnMut(&[u8])) -> usize {
        let mut q = lock(&self.written);
        let mut n = 0;
        while q.pop(|p, _, _| f(p)).is_some() {
            n += 1;
        }
        n
    }

    /// Makes every later read and write fail as on a device that was deleted (EBADFD).
    pub fn remove(&self) {
        self.removed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn check(&self) -> io::Result<()> {
        if self.removed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(io::Error::from_raw_os_error(libc::EBADFD));
        }
        Ok(())
    }

    fn write(&self, parts: &[&[u8]]) -> io::Result<usize> {
        self.check()?;
        if lock(&self.written).push(parts, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0) {
            Ok(parts.iter().map(|p| p.len()).sum())
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOBUFS))
        }
    }
}

impl PacketWrite for MemDevice {
    fn write_packet(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        // Most writes are a header and a packet, or a run's headers and payloads: at most
        // this many parts, kept on the stack.
        let mut parts: [&[u8]; 80] = [&[]; 80];
        if iov.len() > parts.len() {
            return Err(io::Error::from(ErrorKind::InvalidInput));
        }
        for (p, s) in parts.iter_mut().zip(iov) {
            *p = s;
        }
        self.write(&parts[..iov.len()])
    }
}

impl DeviceQueue for MemDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let got = lock(&self.to_read).pop(|p, _, _| {
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            n
        });
        got.ok_or_else(|| io::Error::from(ErrorKind::WouldBlock))
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(&[buf])
    }

    fn recv_segments(
        &self,
        _raw: &mut [u8],
        bufs: &mut [Box<[u8]>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        // Packets are handed over whole (no super-packets): one segment, header skipped.
        let (Some(buf), Some(size)) = (bufs.first_mut(), sizes.first_mut()) else {
            return Ok(0);
        };
        self.check()?;
        let skip = if self.vnet_hdr {
            super::super::batch_gro::VNET_HDR_LEN
        } else {
            0
        };
        let got = lock(&self.to_read).pop(|p, _, _| {
            let p = p.get(skip..).unwrap_or_default();
            let n = p.len().min(buf.len().saturating_sub(offset));
            buf[offset..offset + n].copy_from_slice(&p[..n]);
            n
        });
        *size = got.ok_or_else(|| io::Error::from(ErrorKind::WouldBlock))?;
        Ok(1)
    }

    fn tcp_gso(&self) -> bool {
        self.vnet_hdr
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An in-memory underlay socket (UDP or raw): datagrams to receive, from a source with an
/// outer TOS; datagrams sent, with their destination.
#[derive(Debug)]
pub struct MemSocket {
    to_recv: Mutex<Queue>,
    sent: Mutex<Queue>,
    fd: UnixDatagram,
}

impl MemSocket {
    /// A socket holding up to `depth` datagrams each way.
    pub fn new(depth: usize) -> io::Result<MemSocket> {
        Ok(MemSocket {
            to_recv: Mutex::new(Queue::new(depth)),
            sent: Mutex::new(Queue::new(depth)),
            fd: idle_fd()?,
        })
    }

    /// Queues a datagram to be received from `src` with outer TOS `tos`. False when full.
    pub fn inject(&self, src: impl Into<IpAddr>, tos: u8, datagram: &[u8]) -> bool {
        let src = src.into();
        lock(&self.to_recv).push(&[datagram], src, tos)
    }

    /// Hands every datagram sent (head and body joined) and its destination to `f`, oldest
    /// first, and forgets them; returns how many.
    pub fn take_sent(&self, mut f: impl FnMut(IpAddr, &[u8])) -> usize {
        let mut q = lock(&self.sent);
        let mut n = 0;
        while q.pop(|p, dst, _| f(dst, p)).is_some() {
            n += 1;
        }
        n
    }
}

impl DatagramSocket for MemSocket {
    fn recv_batch(
        &self,
        arena: &mut [u8],
        slot: usize,
        meta: &mut [RecvMeta],
    ) -> io::Result<(usize, Option<u32>)> {
        let mut q = lock(&self.to_recv);
        let room = arena.len().checked_div(slot).unwrap_or(0).min(meta.len());
        let mut n = 0;
        while n < room {
            let at = n * slot;
            let got = q.pop(|p, src, tos| {
                let len = p.len().min(slot);
                arena[at..at + len].copy_from_slice(&p[..len]);
                RecvMeta {
                    len,
                    truncated: p.len() > slot,
                    src: Some(src),
                    src_port: 0,
                    gso_size: 0,
                    tos,
                }
            });
            let Some(m) = got else { break };
            meta[n] = m;
            n += 1;
        }
        if n == 0 {
            return Err(io::Error::from(ErrorKind::WouldBlock));
        }
        Ok((n, None))
    }

    fn send_batch(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
        let mut q = lock(&self.sent);
        for (i, m) in msgs.iter().enumerate() {
            if !q.push(&[m.head, m.body], m.dst, 0) {
                return if i == 0 {
                    Err(io::Error::from_raw_os_error(libc::ENOBUFS))
                } else {
                    Ok(i)
                };
            }
        }
        Ok(msgs.len())
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
