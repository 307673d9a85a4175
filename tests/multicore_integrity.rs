//! Byte-exact TCP transfers through the L2 tunnel (`--threads 2`): a file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1398 fills a 1450-byte TAP
//! MTU exactly; 1397, 1200, 536 and the default too) and odd write sizes; the receiver's hash
//! must equal the sender's. Needs root and /usr/bin/python3.

mod daemon_support;
mod l2_pair_support;
mod transfer_support;

use l2_pair_support::two_daemons;
use transfer_support::{Payload, transfer};

#[test]
fn tcp_streams_arrive_byte_identical_around_the_mtu_boundary() {
    let (p, _a, _b) = two_daemons("2");
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
