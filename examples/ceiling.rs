//! The ceiling of a userspace tunnel on a topology: the fastest a process can move the bytes
//! with the same devices, offloads and sockets vtepd uses, and no tunnel logic at all.
//! `lab/bench.sh` measures vtepd's modes as a share of it.
//!
//! - `ceiling pass --layer l2|l3 --dev NAME --local A --remote B [--port P]`: opens a TAP (l2)
//!   or TUN (l3) device with virtio-net headers and the offloads vtepd turns on (checksum and
//!   TCP/IPv4 segmentation), and forwards it over UDP, unchanged, to the same program on the
//!   other host, which writes the bytes back into its own device. Each device read (a TSO
//!   super-frame, or one small frame) is sent as one UDP send: small ones in batches with one
//!   `sendmmsg`, large ones with UDP GSO cut to the underlay's datagram size; the far side
//!   reads with UDP GRO, so a super-frame crosses as one read. Nothing is parsed, segmented,
//!   checksummed or looked up. Each device read travels as a record, its length (two bytes,
//!   big-endian) then the bytes, so that a coalesced read splits back into device writes; a
//!   record must fit one UDP send, so the script caps the device's `gso_max_size`. It runs like
//!   vtepd's workers: one thread per CPU (`--workers`), each owning one queue of a multi-queue
//!   device and one socket of a SO_REUSEPORT group, polling both and running each batch to
//!   completion, so its round trip is a ceiling for vtepd's too.
//! - `ceiling raw-send --remote B --secs S [--threads N] [--size 1500]` and
//!   `ceiling raw-sink --secs S`: the IPIP ceiling: protocol-4 packets of `size` bytes (outer
//!   header included) sent as fast as raw sockets take them (`sendmmsg`, 64 at a time), and
//!   received with `recvmmsg` on a raw socket; the sink prints what arrived.
//!
//! Written by hand: a benchmark instrument over vtepd's own syscall wrappers (`vtepd::sys`);
//! nothing published does this.

use clap::{Parser, Subcommand, ValueEnum};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};
use tun_rs::{DeviceBuilder, Layer, SyncDevice};
use vtepd::daemon::socket;
use vtepd::sys::{self, MAX_BATCH, RecvMeta, SendMsg};

#[derive(Parser)]
#[command(about = "The ceiling of a userspace tunnel (see the source's documentation)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum DevLayer {
    L2,
    L3,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forward a TAP/TUN device over UDP to the same program on the other host, unchanged.
    Pass {
        #[arg(long, value_enum)]
        layer: DevLayer,
        #[arg(long)]
        dev: String,
        #[arg(long)]
        local: Ipv4Addr,
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long, default_value_t = 4789)]
        port: u16,
        /// Device MTU.
        #[arg(long, default_value_t = 1450)]
        mtu: u16,
        /// UDP payload per datagram on the wire (the underlay's MTU less 28).
        #[arg(long, default_value_t = 1472)]
        segment: u16,
        /// Workers, each a thread with its own device queue and socket (default: one per CPU,
        /// as vtepd).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Send protocol-4 packets as fast as a raw socket takes them.
    RawSend {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Outer packet size in bytes (the IPv4 header included).
        #[arg(long, default_value_t = 1500)]
        size: usize,
    },
    /// Count the protocol-4 packets that arrive, then print the rate.
    RawSink {
        #[arg(long)]
        secs: f64,
    },
}

fn main() {
    let r = match Args::parse().cmd {
        Cmd::Pass {
            layer,
            dev,
            local,
            remote,
            port,
            mtu,
            segment,
            workers,
        } => pass(
            layer,
            &dev,
            local,
            SocketAddrV4::new(remote, port),
            mtu,
            segment,
            workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
        ),
        Cmd::RawSend {
            remote,
            secs,
            threads,
            size,
        } => raw_send(remote, secs, threads, size),
        Cmd::RawSink { secs } => raw_sink(secs),
    };
    if let Err(e) = r {
        eprintln!("ceiling: {e}");
        std::process::exit(1);
    }
}

/// Largest record: a device read of up to 64 KiB plus its two-byte length.
const RECORD: usize = 65_536 + 2;

fn pass(
    layer: DevLayer,
    dev: &str,
    local: Ipv4Addr,
    remote: SocketAddrV4,
    mtu: u16,
    segment: u16,
    workers: usize,
) -> io::Result<()> {
    let layer = match layer {
        DevLayer::L2 => Layer::L2,
        DevLayer::L3 => Layer::L3,
    };
    let workers = workers.max(1);
    let device = DeviceBuilder::new()
        .name(dev)
        .layer(layer)
        .mtu(mtu)
        .multi_queue(workers > 1)
        .offload(true)
        .build_sync()?;
    sys::tun_set_offload(&device, libc::TUN_F_CSUM | libc::TUN_F_TSO4)?;
    let mut queues = vec![device];
    for _ in 1..workers {
        let q = queues[0].try_clone()?;
        queues.push(q);
    }
    // vtepd's own VXLAN socket group (SO_REUSEPORT, non-blocking, UDP GRO), 8 MiB receive
    // buffers, and per worker a sending socket on a port of its own, as vtepd sends each flow
    // from its own source port, so that the far side's group spreads the workers' traffic.
    let group = socket::bind_udp_group(local.into(), remote.port(), workers, false)
        .map_err(|e| io::Error::other(e.message()))?;
    let handles: Vec<_> = queues
        .into_iter()
        .zip(group)
        .map(|(queue, rx)| {
            queue.set_nonblocking(true)?;
            sys::force_buffer_size(&rx, false, 8 << 20)?;
            let tx = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
            sys::force_buffer_size(&tx, true, 8 << 20)?;
            Ok(std::thread::spawn(move || {
                worker(&queue, &rx, &tx, remote, segment)
            }))
        })
        .collect::<io::Result<_>>()?;
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

const DEVICE: Token = Token(0);
const SOCKET: Token = Token(1);

/// One worker, like vtepd's: one thread owning one device queue and one socket of the group,
/// polling both, running each batch to completion with no hand-off to another thread.
fn worker(
    dev: &SyncDevice,
    rx: &UdpSocket,
    tx: &UdpSocket,
    remote: SocketAddrV4,
    segment: u16,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (fd, token) in [(dev.as_raw_fd(), DEVICE), (rx.as_raw_fd(), SOCKET)] {
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(4);
    let mut up = vec![0u8; MAX_BATCH * RECORD];
    let mut down = vec![0u8; MAX_BATCH * RECORD];
    let mut lens = [0usize; MAX_BATCH];
    let mut meta = [RecvMeta::default(); MAX_BATCH];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        // Drain both until neither has anything (readiness is edge-triggered).
        loop {
            let sent = device_to_udp(dev, tx, &mut up, &mut lens, remote, segment)?;
            let written = udp_to_device(dev, rx, &mut down, &mut meta)?;
            if sent + written == 0 {
                break;
            }
        }
    }
}

/// One batch of device reads to UDP sends: small records go out together with one `sendmmsg`,
/// a record above one datagram with one UDP GSO send (in order). Returns the reads.
fn device_to_udp(
    dev: &SyncDevice,
    sock: &UdpSocket,
    arena: &mut [u8],
    lens: &mut [usize; MAX_BATCH],
    remote: SocketAddrV4,
    segment: u16,
) -> io::Result<usize> {
    let mut n = 0;
    while n < MAX_BATCH {
        let slot = &mut arena[n * RECORD..(n + 1) * RECORD];
        match dev.recv(&mut slot[2..]) {
            Ok(len) => {
                slot[..2].copy_from_slice(&(len as u16).to_be_bytes());
                lens[n] = len + 2;
                n += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    send_records(sock, arena, &lens[..n], remote, segment);
    Ok(n)
}

/// Sends records `lens` of `arena` (one per [`RECORD`] slot) in order: runs of small ones with
/// one `sendmmsg`, each large one with UDP GSO. A send the socket refuses is dropped, as a
/// tunnel would drop it.
fn send_records(
    sock: &UdpSocket,
    arena: &[u8],
    lens: &[usize],
    remote: SocketAddrV4,
    segment: u16,
) {
    let mut small: Vec<SendMsg<'_>> = Vec::with_capacity(MAX_BATCH);
    for (i, &len) in lens.iter().enumerate() {
        let record = &arena[i * RECORD..i * RECORD + len];
        if len <= usize::from(segment) {
            small.push(SendMsg {
                head: record,
                body: &[],
                dst: IpAddr::V4(*remote.ip()),
            });
            continue;
        }
        flush(sock, &mut small, remote.port());
        let _ = sys::send_segmented(sock, &[IoSlice::new(record)], remote.into(), 0, segment);
    }
    flush(sock, &mut small, remote.port());
}

fn flush(sock: &UdpSocket, msgs: &mut Vec<SendMsg<'_>>, port: u16) {
    let mut at = 0;
    while at < msgs.len() {
        match sys::send_batch_to_port(sock, &msgs[at..], port) {
            Ok(n) => at += n.max(1),
            Err(_) => at += 1,
        }
    }
    msgs.clear();
}

/// One batch of UDP reads (GRO: a whole GSO send in one read) to device writes, record by
/// record. Returns the reads.
fn udp_to_device(
    dev: &SyncDevice,
    sock: &UdpSocket,
    arena: &mut [u8],
    meta: &mut [RecvMeta; MAX_BATCH],
) -> io::Result<usize> {
    let n = match sys::recv_batch(sock, arena, RECORD, meta) {
        Ok((n, _)) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
        Err(e) => return Err(e),
    };
    for (i, m) in meta.iter().take(n).enumerate() {
        let mut read = &arena[i * RECORD..i * RECORD + m.len];
        while let [a, b, rest @ ..] = read {
            let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
            let _ = dev.send(&rest[..len]);
            read = &rest[len..];
        }
    }
    Ok(n)
}

/// Protocol number of IP in IP.
const IPIP: i32 = 4;
/// IPv4 header the kernel puts in front of a raw socket's payload.
const IPV4_HEADER: usize = 20;

fn raw_socket() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPIP)))
}

fn raw_send(remote: Ipv4Addr, secs: f64, threads: usize, size: usize) -> io::Result<()> {
    let payload = size
        .checked_sub(IPV4_HEADER)
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::other("--size must be above the 20-byte IPv4 header"))?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || -> io::Result<u64> {
                let sock = raw_socket()?;
                // Any bytes do: nobody decapsulates them.
                let body = vec![0x45u8; payload];
                let msgs = vec![
                    SendMsg {
                        head: &body,
                        body: &[],
                        dst: remote.into(),
                    };
                    MAX_BATCH
                ];
                let mut sent = 0u64;
                while Instant::now() < until {
                    match sys::send_batch(&sock, &msgs) {
                        Ok(n) => sent += n as u64,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            std::thread::yield_now()
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent = 0;
    for w in workers {
        sent += w
            .join()
            .map_err(|_| io::Error::other("a sending thread panicked"))??;
    }
    println!("sent {sent} pps {:.0}", sent as f64 / secs);
    Ok(())
}

/// A poller for `fd`'s readability.
fn readable(fd: &impl AsRawFd) -> io::Result<(Poll, Events)> {
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut SourceFd(&fd.as_raw_fd()), Token(0), Interest::READABLE)?;
    Ok((poll, Events::with_capacity(4)))
}

fn raw_sink(secs: f64) -> io::Result<()> {
    let sock = raw_socket()?;
    sock.set_nonblocking(true)?;
    sys::force_buffer_size(&sock, true, 8 << 20)?;
    let (mut poll, mut events) = readable(&sock.as_fd())?;
    const SLOT: usize = 2048;
    let mut arena = vec![0u8; MAX_BATCH * SLOT];
    let mut meta = [RecvMeta::default(); MAX_BATCH];
    let until = Instant::now() + Duration::from_secs_f64(secs);
    // The rate is taken from the first packet to the last, so the sink may start first and
    // wait; it stops when the flow has been quiet for QUIET.
    const QUIET: Duration = Duration::from_millis(500);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let (mut packets, mut bytes) = (0u64, 0u64);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if first.is_some() && last.elapsed() > QUIET {
            break;
        }
        match poll.poll(&mut events, Some(left.min(QUIET))) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        loop {
            match sys::recv_batch(&sock, &mut arena, SLOT, &mut meta) {
                Ok((n, _)) => {
                    last = Instant::now();
                    first.get_or_insert(last);
                    packets += n as u64;
                    bytes += meta.iter().take(n).map(|m| m.len as u64).sum::<u64>();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    let t = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    if packets < 2 || t <= 0.0 {
        return Err(io::Error::other(format!(
            "only {packets} packet(s) arrived"
        )));
    }
    // A raw IPv4 socket reads the whole packet, its header included: the inner bytes are what
    // follows that header.
    let inner = bytes.saturating_sub(packets * IPV4_HEADER as u64);
    println!(
        "packets {packets} pps {:.0} inner_gbps {:.3}",
        packets as f64 / t,
        inner as f64 * 8.0 / t / 1e9
    );
    Ok(())
}
