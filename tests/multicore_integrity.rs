//! Byte-exact TCP transfers through the L2 tunnel (`--threads 2`): a file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1398 fills a 1450-byte TAP
//! MTU exactly; 1397, 1200, 536 and the default too) and odd write sizes; the receiver's hash
//! must equal the sender's. Needs root and /usr/bin/python3.

mod daemon_support;
mod transfer_support;

use daemon_support::{Daemon, Pair};
use std::time::Duration;
use transfer_support::{Payload, quiet, transfer};

#[test]
fn tcp_streams_arrive_byte_identical_around_the_mtu_boundary() {
    let p = Pair::new();
    quiet(&p.a);
    quiet(&p.b);
    let a = Daemon::start(
        &p.a,
        &[
            "--dev",
            "vx0",
            "--local",
            "192.0.2.1",
            "--vni",
            "42",
            "--address",
            "10.9.0.1/24",
            "--peer",
            "192.0.2.2",
            "--threads",
            "2",
        ],
    );
    let _b = Daemon::start(
        &p.b,
        &[
            "--dev",
            "vx0",
            "--local",
            "192.0.2.2",
            "--vni",
            "42",
            "--address",
            "10.9.0.2/24",
            "--peer",
            "192.0.2.1",
            "--threads",
            "2",
        ],
    );
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    let file = Payload::new("pl", 0x9e37_79b9_7f4a_7c15, 8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1398, 65_536),
        (1397, 1397),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, "10.9.0.2", 7200 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
}
