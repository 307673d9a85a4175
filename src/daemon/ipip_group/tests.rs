use super::*;
use libc::{
    BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K,
    BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET,
    BPF_RSH, BPF_ST, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
};

/// Runs a classic BPF program the way the kernel does (the instructions the filter uses):
/// the return value, 0 when a load falls outside the packet.
fn run(prog: &[sock_filter], pkt: &[u8]) -> u32 {
    let (mut a, mut x, mut m, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    let load = |at: u32, size: usize| -> Option<u32> {
        let at = at as usize;
        let b = pkt.get(at..at + size)?;
        Some(b.iter().fold(0u32, |v, &byte| (v << 8) | u32::from(byte)))
    };
    loop {
        let i = prog[pc];
        let (code, k) = (u32::from(i.code), i.k);
        pc += 1;
        let operand = if code & BPF_X != 0 { x } else { k };
        match code {
            c if c == BPF_LDX | BPF_B | BPF_MSH => match load(k, 1) {
                Some(v) => x = (v & 0xf) * 4,
                None => return 0,
            },
            c if c == BPF_LD | BPF_W | BPF_LEN => a = pkt.len() as u32,
            c if c & 0x7 == BPF_LD && c & 0xe0 == BPF_IND => {
                let size = match c & 0x18 {
                    s if s == BPF_W => 4,
                    s if s == BPF_H => 2,
                    _ => 1,
                };
                match load(x + k, size) {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
            c if c == BPF_LD | BPF_MEM => a = m[k as usize],
            c if c == BPF_LDX | BPF_MEM => x = m[k as usize],
            c if c == BPF_ST => m[k as usize] = a,
            c if c == BPF_MISC | BPF_TAX => x = a,
            c if c == BPF_MISC | BPF_TXA => a = x,
            c if c & 0x7 == BPF_ALU => {
                a = match c & 0xf0 {
                    o if o == BPF_ADD => a.wrapping_add(operand),
                    o if o == BPF_MUL => a.wrapping_mul(operand),
                    o if o == BPF_AND => a & operand,
                    o if o == BPF_LSH => a << operand,
                    o if o == BPF_RSH => a >> operand,
                    o if o == BPF_XOR => a ^ operand,
                    o if o == BPF_MOD => a % operand,
                    o => panic!("ALU op {o:#x}"),
                }
            }
            c if c & 0x7 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    o if o == BPF_JEQ => a == operand,
                    o if o == BPF_JGE => a >= operand,
                    o if o == BPF_JSET => a & operand != 0,
                    o => panic!("jump op {o:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c if c == BPF_RET | BPF_K => return k,
            c => panic!("opcode {c:#x}"),
        }
    }
}

/// An IPIP packet (outer header of `outer_ihl` words) around an inner IPv4 packet of protocol
/// `proto` with these ports, fragment field and inner header length; cut to `cut` bytes.
#[allow(clippy::too_many_arguments)]
fn ipip(
    outer_ihl: u8,
    inner_ihl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    frag: u16,
    cut: Option<usize>,
) -> Vec<u8> {
    let mut p = vec![0u8; usize::from(outer_ihl) * 4];
    p[0] = 0x40 | outer_ihl;
    p[9] = 4;
    let mut inner = vec![0u8; usize::from(inner_ihl.max(5)) * 4];
    inner[0] = 0x40 | inner_ihl;
    inner[6..8].copy_from_slice(&frag.to_be_bytes());
    inner[9] = proto;
    inner[12..16].copy_from_slice(&src);
    inner[16..20].copy_from_slice(&dst);
    p.extend_from_slice(&inner);
    with_ports(p, ports, cut)
}

/// `p` followed by the ports and 24 more bytes, cut to `cut` bytes.
fn with_ports(mut p: Vec<u8>, ports: (u16, u16), cut: Option<usize>) -> Vec<u8> {
    p.extend_from_slice(&ports.0.to_be_bytes());
    p.extend_from_slice(&ports.1.to_be_bytes());
    p.extend_from_slice(&[0xab; 24]);
    if let Some(n) = cut {
        p.truncate(n);
    }
    p
}

fn samples() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, proto) in [6u8, 17, 1, 47].into_iter().enumerate() {
        for sport in [1000u16, 1001, 1002, 5201, 40000, 40001] {
            for frag in [0u16, 0x4000, 0x2000, 0x0010] {
                v.push(ipip(
                    5,
                    5,
                    proto,
                    [10, 0, 0, 1],
                    [10, 0, 1, i as u8],
                    (sport, 80),
                    frag,
                    None,
                ));
            }
            v.push(ipip(
                6,
                7,
                proto,
                [10, 9, 0, 1],
                [10, 0, 3, 3],
                (sport, 53),
                0,
                None,
            ));
        }
    }
    // Cut short: no inner header, a partial one, no ports, two bytes of ports.
    for cut in [20, 24, 39, 40, 41, 42, 43, 44] {
        v.push(ipip(
            5,
            5,
            6,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            (1, 2),
            0,
            Some(cut),
        ));
    }
    // A nonsense inner header length: still exactly one member.
    v.push(ipip(5, 1, 6, [10, 0, 0, 1], [10, 0, 0, 2], (1, 2), 0, None));
    v.push(ipip(
        5,
        15,
        17,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        (1, 2),
        0,
        None,
    ));
    v
}

/// A protocol-41 packet (outer header of `outer_ihl` words) around an IPv6 header with next
/// header `next`, addresses ending in `src` and `dst`, and these ports; cut to `cut` bytes.
fn ipip6(
    outer_ihl: u8,
    next: u8,
    src: u32,
    dst: u32,
    ports: (u16, u16),
    cut: Option<usize>,
) -> Vec<u8> {
    let mut p = vec![0u8; usize::from(outer_ihl) * 4];
    p[0] = 0x40 | outer_ihl;
    p[9] = 41;
    let mut inner = [0u8; 40];
    inner[0] = 0x60;
    inner[6] = next;
    inner[8] = 0xfd;
    inner[20..24].copy_from_slice(&src.to_be_bytes());
    inner[24] = 0xfd;
    inner[36..40].copy_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&inner);
    with_ports(p, ports, cut)
}

fn samples6() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, next) in [6u8, 17, 58, 44].into_iter().enumerate() {
        for sport in [1000u16, 1001, 1002, 5201, 40000, 40001] {
            v.push(ipip6(
                5,
                next,
                0x0100_0005,
                0x0200_0000 | i as u32,
                (sport, 80),
                None,
            ));
            v.push(ipip6(6, next, 9, 3, (sport, 53), None));
        }
    }
    for cut in [20, 40, 59, 60, 61, 62, 63, 64] {
        v.push(ipip6(5, 6, 1, 2, (1, 2), Some(cut)));
    }
    v
}

#[test]
fn exactly_one_member_keeps_each_packet_and_it_is_the_one_the_hash_names() {
    for count in 1..=5u32 {
        let progs: Vec<_> = (0..count).map(|i| spread_filter6(i, count)).collect();
        for pkt in samples6() {
            let keepers: Vec<u32> = (0..count)
                .filter(|&i| run(&progs[i as usize], &pkt) != 0)
                .collect();
            assert_eq!(keepers, vec![member_of(&pkt, count)], "{count}: {pkt:02x?}");
        }
        let progs: Vec<_> = (0..count).map(|i| spread_filter(i, count)).collect();
        for pkt in samples() {
            let keepers: Vec<u32> = (0..count)
                .filter(|&i| run(&progs[i as usize], &pkt) != 0)
                .collect();
            assert_eq!(
                keepers,
                vec![member_of(&pkt, count)],
                "{count} members, {pkt:02x?}"
            );
            // Kept whole.
            assert_eq!(run(&progs[keepers[0] as usize], &pkt), u32::MAX);
        }
    }
}

#[test]
fn the_hash_follows_the_inner_flow() {
    let pkt = |src, dst, ports, frag, cut| ipip(5, 5, 6, src, dst, ports, frag, cut);
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let fwd = spread_hash(&pkt(a, b, (40000, 80), 0, None));
    // Both directions of a flow hash alike; another port is another flow.
    assert_eq!(fwd, spread_hash(&pkt(b, a, (80, 40000), 0, None)));
    assert_ne!(fwd, spread_hash(&pkt(a, b, (40001, 80), 0, None)));
    // Fragments (no ports) and short packets hash by addresses, or not at all.
    let frag = spread_hash(&pkt(a, b, (40000, 80), 0x2000, None));
    assert_eq!(frag, spread_hash(&pkt(a, b, (1, 2), 0x0001, None)));
    assert_eq!(spread_hash(&pkt(a, b, (1, 2), 0, Some(39))), None);
    assert_eq!(member_of(&pkt(a, b, (1, 2), 0, Some(20)), 4), 0);
    // Sequential client ports (iperf3 streams) spread over two members.
    let members: std::collections::HashSet<u32> = (0..8)
        .map(|i| member_of(&pkt(a, b, (40000 + i, 5201), 0, None), 2))
        .collect();
    assert_eq!(members.len(), 2);
    // IPv6 inside: the same, from the IPv6 header.
    let fwd = spread_hash6(&ipip6(5, 6, 1, 2, (40000, 80), None));
    assert_eq!(fwd, spread_hash6(&ipip6(5, 6, 2, 1, (80, 40000), None)));
    assert_ne!(fwd, spread_hash6(&ipip6(5, 6, 1, 2, (40001, 80), None)));
    let no_ports = spread_hash6(&ipip6(5, 58, 1, 2, (40000, 80), None));
    assert_eq!(no_ports, spread_hash6(&ipip6(5, 58, 1, 2, (1, 2), None)));
    assert_eq!(spread_hash6(&ipip6(5, 6, 1, 2, (1, 2), Some(59))), None);
    let members: std::collections::HashSet<u32> = (0..8)
        .map(|i| member_of(&ipip6(5, 6, 1, 2, (40000 + i, 5201), None), 2))
        .collect();
    assert_eq!(members.len(), 2);
}

#[test]
fn the_kernel_accepts_the_program_and_agrees_with_the_model() {
    for (carried, samples) in [(Carried::Ipv4, samples()), (Carried::Ipv6, samples6())] {
        in_a_namespace(carried, samples);
    }
}

fn in_a_namespace(carried: Carried, samples: Vec<Vec<u8>>) {
    let t = std::thread::spawn(move || {
        if sys::unshare_network_namespace().is_err() {
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(up, "ip link set lo up");
        let count = 3;
        let group = open_ipip_group(Ipv4Addr::LOCALHOST, carried, count).unwrap();
        let sender = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let mut sent = Vec::new();
        for mut pkt in samples {
            // A real outer header to 127.0.0.1 (the kernel fills in length, checksum and ID).
            let olen = usize::from(pkt[0] & 0xf) * 4;
            if olen > 20 {
                pkt[20..olen].fill(1); // NOP options
            }
            pkt[8] = 64;
            pkt[12..16].copy_from_slice(&[127, 0, 0, 1]);
            pkt[16..20].copy_from_slice(&[127, 0, 0, 1]);
            let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
            sender.send_to(&pkt, &to.into()).unwrap();
            sent.push(pkt);
        }
        let mut got: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); count];
        let mut buf = vec![0u8; 2048];
        for (i, mut s) in group.iter().enumerate() {
            while let Ok(n) = s.read(&mut buf) {
                got[i].push((i, buf[..n].to_vec()));
            }
        }
        let total: usize = got.iter().map(Vec::len).sum();
        assert_eq!(total, sent.len(), "every packet received exactly once");
        assert!(
            got.iter().all(|g| !g.is_empty()),
            "spread over every member"
        );
        for (i, pkt) in got.into_iter().flatten() {
            // The payload after the outer header is what was sent: match on it.
            let body = &pkt[usize::from(pkt[0] & 0xf) * 4..];
            let orig = sent
                .iter()
                .find(|s| &s[usize::from(s[0] & 0xf) * 4..] == body)
                .expect("a packet that was sent");
            assert_eq!(i as u32, member_of(orig, count as u32), "{orig:02x?}");
        }
    });
    t.join().unwrap();
}
