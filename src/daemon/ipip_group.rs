//! The workers' raw IPIP sockets: one each, for sending and receiving, such that every IPIP
//! packet arriving is received by exactly one of them, and every packet of a flow by the same
//! one.
//!
//! One group per protocol: 4 (IPv4 inside) and, when the device has an IPv6 address, 41 (IPv6
//! inside, RFC 4213); each filter reads the inner header of its protocol. Sends of both go out
//! through the protocol-4 sockets (`IP_HDRINCL`: the header vtepd writes names the protocol).
//!
//! Raw sockets have no SO_REUSEPORT group: every raw socket of protocol 4 bound to our address
//! queues its own copy of each IPIP packet, so N plain sockets would deliver everything N
//! times. Each socket of the group carries a classic BPF filter instead: all N filters compute
//! the same hash of the inner flow (inner source and destination addresses, and for an
//! unfragmented TCP or UDP packet its ports, combined so that both directions of a flow hash
//! alike) and socket `i` keeps the packet only when the hash modulo N is `i`. Exactly one
//! socket queues it; packets too short to hold an inner header all go to socket 0, whose
//! worker counts them as bad. No load in the filter can fail (every offset is checked against
//! the length first), so no packet is dropped by all N.
//!
//! The price: the kernel clones the packet for every raw socket before the filter runs, so
//! each packet costs N clones and N filter runs (about 45 instructions) in softirq, of which
//! N - 1 are thrown away.
//!
//! Why not AF_PACKET sockets in a PACKET_FANOUT_HASH group: they tap the underlay interface
//! before the IP layer, so they would see IPIP packets still fragmented, ones netfilter drops,
//! ones for other addresses, and none arriving on another interface; and the kernel (which has
//! no IPIP handler loaded) would still answer every packet with "protocol unreachable" unless a
//! raw protocol-4 socket exists anyway, which again costs a clone per packet. A single raw
//! socket read by one worker would put all decapsulation on one core.

use super::socket::size_buffer;
use crate::error::Failure;
use crate::sys;
use libc::sock_filter;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use tracing::info;

/// What a group's packets carry: its IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// IPv4 in IPv4, protocol 4.
    Ipv4,
    /// IPv6 in IPv4, protocol 41.
    Ipv6,
}

impl Carried {
    fn protocol(self) -> i32 {
        match self {
            Carried::Ipv4 => libc::IPPROTO_IPIP,
            Carried::Ipv6 => libc::IPPROTO_IPV6,
        }
    }
}

/// Opens `n` raw sockets of the protocol that carries `carried`, bound to `local` (IP_HDRINCL:
/// we write the outer header), non-blocking, each receiving its share of the packets (see the
/// module notes); with `n == 1`, one socket that receives them all.
pub fn open_ipip_group(
    local: Ipv4Addr,
    carried: Carried,
    n: usize,
) -> Result<Vec<Socket>, Failure> {
    let n = n.max(1);
    let count = u32::try_from(n).map_err(|_| Failure::Usage(format!("{n} IPIP sockets")))?;
    (0..count)
        .map(|i| open_member(local, carried, i, count))
        .collect()
}

fn open_member(
    local: Ipv4Addr,
    carried: Carried,
    index: u32,
    count: u32,
) -> Result<Socket, Failure> {
    let fail = |what: &str, e: io::Error| {
        let hint = if e.kind() == ErrorKind::PermissionDenied {
            " (vtepd run needs CAP_NET_RAW)"
        } else {
            ""
        };
        let p = carried.protocol();
        Failure::Runtime(format!(
            "raw IP protocol {p} socket: cannot {what}: {e}{hint}"
        ))
    };
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(carried.protocol())),
    )
    .map_err(|e| fail("create it", e))?;
    // The socket receives from the moment it exists: filter first, then empty the queue of
    // what came in unfiltered (copies another member also gets).
    if count > 1 {
        let filter = match carried {
            Carried::Ipv4 => spread_filter(index, count),
            Carried::Ipv6 => spread_filter6(index, count),
        };
        sys::attach_socket_filter(&sock, &filter).map_err(|e| fail("attach its filter", e))?;
    }
    sock.set_header_included_v4(true)
        .map_err(|e| fail("set IP_HDRINCL", e))?;
    // Without it the kernel reports a packet its queues dropped on the way out as sent.
    sys::enable_recv_err(&sock).map_err(|e| fail("set IP_RECVERR", e))?;
    sock.bind(&SocketAddrV4::new(local, 0).into())
        .map_err(|e| fail("bind it", e))?;
    size_buffer(&sock, true, "raw IPIP socket");
    size_buffer(&sock, false, "raw IPIP socket");
    sock.set_nonblocking(true)
        .map_err(|e| fail("make it non-blocking", e))?;
    if count > 1 {
        let dropped = discard_queued(&sock).map_err(|e| fail("empty its queue", e))?;
        if dropped > 0 {
            info!(
                socket = index,
                dropped, "discarded IPIP packets that arrived while the sockets were set up"
            );
        }
    }
    Ok(sock)
}

/// Reads and throws away everything queued on a non-blocking socket; returns how many.
fn discard_queued(mut sock: &Socket) -> io::Result<usize> {
    let mut buf = vec![0u8; 65_536];
    let mut n = 0;
    loop {
        match sock.read(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Multiplier of the final mix (2^32 / golden ratio): spreads nearby flow values.
const MIX: u32 = 0x9e37_79b1;

/// The 32-bit word at `at` in `b`, as the filter loads it.
fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The 16-bit half-word at `at` in `b`.
fn half(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

/// The spread hash the filter computes, from the inner packet's addresses and, for an
/// unfragmented TCP or UDP packet with its ports present, the ports; `None` when the inner
/// header is cut short (such packets go to socket 0). For tests and documentation: the kernel
/// runs the filter.
pub fn spread_hash(outer: &[u8]) -> Option<u32> {
    let (word, half) = (|at| word(outer, at), |at| half(outer, at));
    let o = usize::from(outer.first()? & 0xf) * 4;
    if outer.len() < o + 20 {
        return None;
    }
    let mut h = word(o + 12)? ^ word(o + 16)?;
    let proto = outer[o + 9];
    let fragment = half(o + 6)? & 0x3fff != 0;
    if (proto == 6 || proto == 17) && !fragment {
        let l4 = o + usize::from(outer[o] & 0xf) * 4;
        if outer.len() >= l4 + 4 {
            h ^= half(l4)? ^ half(l4 + 2)?;
        }
    }
    Some(h.wrapping_mul(MIX) >> 16)
}

/// The spread hash of a protocol-41 packet: [`spread_hash`]'s, from the inner IPv6 header's
/// addresses (their last 32 bits each) and, for TCP and UDP right after the fixed header, the
/// ports; `None` when the IPv6 header is cut short.
pub fn spread_hash6(outer: &[u8]) -> Option<u32> {
    let (word, half) = (|at| word(outer, at), |at| half(outer, at));
    let o = usize::from(outer.first()? & 0xf) * 4;
    if outer.len() < o + 40 {
        return None;
    }
    let mut h = word(o + 20)? ^ word(o + 36)?;
    if matches!(outer[o + 6], 6 | 17) && outer.len() >= o + 44 {
        h ^= half(o + 40)? ^ half(o + 42)?;
    }
    Some(h.wrapping_mul(MIX) >> 16)
}

/// The member a packet goes to: its spread hash (by its outer protocol: 41 IPv6, else IPv4)
/// modulo `count`, 0 for a short packet.
pub fn member_of(outer: &[u8], count: u32) -> u32 {
    let h = if outer.get(9) == Some(&41) {
        spread_hash6(outer)
    } else {
        spread_hash(outer)
    };
    h.map_or(0, |h| h % count.max(1))
}

fn stmt(code: u32, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        // Every opcode is an OR of constants below 0x100.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Where the filter's branches go (instruction indices, checked as the program is built).
const HASH: usize = 37;
const SHORT: usize = 44;

/// The classic BPF program of member `index` of `count`: computes [`spread_hash`] over the
/// packet (which the kernel presents from the outer IPv4 header on) and keeps it (whole) when
/// the hash modulo `count` is `index`. Scratch words: M0 the hash so far, M1 the inner
/// payload offset, M2 the source port.
pub fn spread_filter(index: u32, count: u32) -> Vec<sock_filter> {
    use libc::{
        BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET,
        BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MSH, BPF_RET, BPF_ST,
        BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
    };
    let mut p = Vec::with_capacity(SHORT + 1);
    let at = |p: &Vec<sock_filter>| p.len();
    // Relative jump offset from the instruction about to be pushed to `target`.
    let to = |p: &Vec<sock_filter>, target: usize| (target - p.len() - 1) as u8;
    let outer_len = stmt(BPF_LDX | BPF_B | BPF_MSH, 0); // X = outer header length
    p.push(outer_len);
    p.push(stmt(BPF_MISC | BPF_TXA, 0));
    p.push(stmt(BPF_ALU | BPF_ADD | BPF_K, 20));
    p.push(stmt(BPF_MISC | BPF_TAX, 0));
    p.push(stmt(BPF_LD | BPF_W | BPF_LEN, 0));
    let short = to(&p, SHORT);
    p.push(jump(BPF_JMP | BPF_JGE | BPF_X, 0, 0, short)); // inner header present?
    // M0 = inner source ^ inner destination.
    p.push(outer_len);
    p.push(stmt(BPF_LD | BPF_W | BPF_IND, 12));
    p.push(stmt(BPF_ST, 0));
    p.push(stmt(BPF_LD | BPF_W | BPF_IND, 16));
    p.push(stmt(BPF_LDX | BPF_MEM, 0));
    p.push(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    p.push(stmt(BPF_ST, 0));
    // Ports only for unfragmented TCP and UDP.
    p.push(outer_len);
    p.push(stmt(BPF_LD | BPF_B | BPF_IND, 9));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 1, 0));
    let hash = to(&p, HASH);
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, hash));
    p.push(stmt(BPF_LD | BPF_H | BPF_IND, 6));
    let hash = to(&p, HASH);
    p.push(jump(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, hash, 0));
    // M1 = offset of the inner payload; its first 4 bytes must be there.
    p.push(stmt(BPF_LD | BPF_B | BPF_IND, 0));
    p.push(stmt(BPF_ALU | BPF_AND | BPF_K, 0xf));
    p.push(stmt(BPF_ALU | BPF_LSH | BPF_K, 2));
    p.push(stmt(BPF_ALU | BPF_ADD | BPF_X, 0));
    p.push(stmt(BPF_ST, 1));
    p.push(stmt(BPF_ALU | BPF_ADD | BPF_K, 4));
    p.push(stmt(BPF_MISC | BPF_TAX, 0));
    p.push(stmt(BPF_LD | BPF_W | BPF_LEN, 0));
    let hash = to(&p, HASH);
    p.push(jump(BPF_JMP | BPF_JGE | BPF_X, 0, 0, hash));
    // M0 ^= source port ^ destination port.
    p.push(stmt(BPF_LDX | BPF_MEM, 1));
    p.push(stmt(BPF_LD | BPF_H | BPF_IND, 0));
    p.push(stmt(BPF_ST, 2));
    p.push(stmt(BPF_LD | BPF_H | BPF_IND, 2));
    p.push(stmt(BPF_LDX | BPF_MEM, 2));
    p.push(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    p.push(stmt(BPF_LDX | BPF_MEM, 0));
    p.push(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    p.push(stmt(BPF_ST, 0));
    assert_eq!(at(&p), HASH, "spread filter: HASH label moved");
    keep_mine(&mut p, index, count);
    assert_eq!(at(&p), SHORT, "spread filter: SHORT label moved");
    p.push(stmt(BPF_RET | BPF_K, if index == 0 { u32::MAX } else { 0 }));
    p
}

/// The filters' common end (the HASH label): the hash in M0 mixed, and the packet kept whole
/// when it modulo `count` is `index`, else refused.
fn keep_mine(p: &mut Vec<sock_filter>, index: u32, count: u32) {
    use libc::{
        BPF_ALU, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MEM, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH,
    };
    p.push(stmt(BPF_LD | BPF_MEM, 0));
    p.push(stmt(BPF_ALU | BPF_MUL | BPF_K, MIX));
    p.push(stmt(BPF_ALU | BPF_RSH | BPF_K, 16));
    p.push(stmt(BPF_ALU | BPF_MOD | BPF_K, count.max(1)));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, index, 0, 1));
    p.push(stmt(BPF_RET | BPF_K, u32::MAX));
    p.push(stmt(BPF_RET | BPF_K, 0));
}

/// Where the IPv6 filter's branches go.
const HASH6: usize = 32;
const SHORT6: usize = 39;

/// The classic BPF program of member `index` of `count` in a protocol-41 group: computes
/// [`spread_hash6`] and keeps the packet (whole) when the hash modulo `count` is `index`.
/// Scratch words: M0 the hash so far, M2 the first of a pair XORed.
pub fn spread_filter6(index: u32, count: u32) -> Vec<sock_filter> {
    use libc::{
        BPF_ADD, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
        BPF_LEN, BPF_MEM, BPF_MISC, BPF_MSH, BPF_RET, BPF_ST, BPF_TAX, BPF_TXA, BPF_W, BPF_X,
        BPF_XOR,
    };
    let mut p = Vec::with_capacity(SHORT6 + 1);
    let to = |p: &Vec<sock_filter>, target: usize| (target - p.len() - 1) as u8;
    let outer_len = stmt(BPF_LDX | BPF_B | BPF_MSH, 0); // X = outer header length
    // Jumps to `target` unless the packet holds `n` bytes past the outer header.
    let need = |p: &mut Vec<sock_filter>, n: u32, target: usize| {
        p.push(outer_len);
        p.push(stmt(BPF_MISC | BPF_TXA, 0));
        p.push(stmt(BPF_ALU | BPF_ADD | BPF_K, n));
        p.push(stmt(BPF_MISC | BPF_TAX, 0));
        p.push(stmt(BPF_LD | BPF_W | BPF_LEN, 0));
        let off = to(p, target);
        p.push(jump(BPF_JMP | BPF_JGE | BPF_X, 0, 0, off));
    };
    // A = the `size` loads at `a` and `b` past the outer header, XORed (M2 scratch).
    let xor_pair = |p: &mut Vec<sock_filter>, size: u32, a: u32, b: u32| {
        p.push(outer_len);
        p.push(stmt(BPF_LD | size | BPF_IND, a));
        p.push(stmt(BPF_ST, 2));
        p.push(stmt(BPF_LD | size | BPF_IND, b));
        p.push(stmt(BPF_LDX | BPF_MEM, 2));
        p.push(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    };
    need(&mut p, 40, SHORT6);
    // M0 = the last word of the source ^ the last word of the destination.
    xor_pair(&mut p, BPF_W, 20, 36);
    p.push(stmt(BPF_ST, 0));
    // Ports only for TCP and UDP right after the fixed header, when they are there.
    p.push(outer_len);
    p.push(stmt(BPF_LD | BPF_B | BPF_IND, 6));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 1, 0));
    let hash = to(&p, HASH6);
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, hash));
    need(&mut p, 44, HASH6);
    // M0 ^= source port ^ destination port.
    xor_pair(&mut p, BPF_H, 40, 42);
    p.push(stmt(BPF_LDX | BPF_MEM, 0));
    p.push(stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
    p.push(stmt(BPF_ST, 0));
    assert_eq!(p.len(), HASH6, "spread filter 6: HASH label moved");
    keep_mine(&mut p, index, count);
    assert_eq!(p.len(), SHORT6, "spread filter 6: SHORT label moved");
    p.push(stmt(BPF_RET | BPF_K, if index == 0 { u32::MAX } else { 0 }));
    p
}

#[cfg(test)]
mod tests;
