//! Byte-exact TCP transfers through the L3 IPIP tunnel, whose TUN device has offloads on: the
//! sender's kernel hands vtepd TSO super-packets (split into segments, each encapsulated) and the
//! receiving vtepd coalesces decapsulated segments into GSO writes. A file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1440 fills the 1480-byte
//! tunnel MTU exactly; 1439, 1200, 536 and the default too) and odd write sizes; the receiver's
//! hash must equal the sender's. Needs root and /usr/bin/python3.

mod daemon_support;
mod transfer_support;

use daemon_support::{Daemon, Netns, Pair};
use std::time::Duration;
use transfer_support::{Payload, quiet, transfer};

fn ipip(ns: &Netns, me: u8, other: u8) -> Daemon {
    Daemon::start(
        ns,
        &[
            "--mode",
            "l3",
            "--encap",
            "ipip",
            "--dev",
            "tun0",
            "--local",
            &format!("192.0.2.{me}"),
            "--address",
            &format!("10.43.{me}.1/24"),
            "--route",
            &format!("10.43.{other}.0/24=192.0.2.{other}"),
        ],
    )
}

fn counter(d: &Daemon, key: &str) -> u64 {
    let s = d.stats();
    s[key]
        .as_u64()
        .or_else(|| s["totals"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

#[test]
fn ipip_tcp_streams_arrive_byte_identical_with_tun_offloads() {
    let p = Pair::new();
    quiet(&p.a);
    quiet(&p.b);
    let a = ipip(&p.a, 1, 2);
    let b = ipip(&p.b, 2, 1);
    assert!(
        p.a.ping_within("10.43.2.1", Duration::from_secs(10)),
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    let file = Payload::new("ipl", 0x2545_f491_4f6c_dd1d, 8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1440, 65_536),
        (1439, 1439),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, "10.43.2.1", 7300 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
    // The sender's device handed over super-packets: more packets left for the tunnel than
    // the device counted (each super-packet is one rx on the TUN device, many tx_tunnel).
    let tun_rx: u64 =
        p.a.cmd("cat")
            .arg("/sys/class/net/tun0/statistics/tx_packets")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
    let tx_tunnel = counter(&a, "tx_tunnel");
    assert!(
        tx_tunnel > tun_rx,
        "no super-packet was split: the device sent {tun_rx}, the tunnel got {tx_tunnel}"
    );
}
