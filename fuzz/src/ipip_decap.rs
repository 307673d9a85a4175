//! `ipip_decap`: IPIP decapsulation on arbitrary bytes: the read-only and `&mut` paths must never panic, must
//! agree, and must stay inside the input; an accepted inner IPv4 header must verify after the ECN
//! update, and an inner IPv6 header (protocol 41) must carry the ECN field it reports.

use crate::frames::fix_ipv4_checksum;
use encap::ipv4::{Ipv4Packet, protocol as ipip_protocol};
use encap::tunnel::ipip;
use encap::{Ecn, EcnUpdate};

/// The target's body.
pub fn run(data: &[u8]) {
    check(data);
    // Again with valid outer and inner header checksums, to reach the deeper checks.
    let mut fixed = data.to_vec();
    if let Some(hl) = fix_ipv4_checksum(&mut fixed, 0) {
        fix_ipv4_checksum(&mut fixed, hl);
        check(&fixed);
    }
}

fn check(data: &[u8]) {
    let ro = ipip::decapsulate(data);
    let mut buf = data.to_vec();
    let rw = ipip::decapsulate_mut(&mut buf);
    assert_eq!(ro, rw);
    match rw {
        Ok(rx) => {
            assert!(rx.inner.start >= 20 && rx.inner.end <= data.len());
            let ecn = if data[9] == ipip_protocol::IPV6 {
                let inner = ipip::inner_ipv6(&buf[rx.inner.clone()]).unwrap();
                Ecn::from_tos(inner.traffic_class)
            } else {
                let inner = Ipv4Packet::new_checked(&buf[rx.inner.clone()]).unwrap();
                assert!(
                    inner.verify_checksum(),
                    "the incremental ECN update kept the checksum valid"
                );
                inner.ecn()
            };
            match rx.ecn {
                EcnUpdate::Set(e) => assert_eq!(ecn, e),
                EcnUpdate::Keep(e) => {
                    assert_eq!(ecn, e);
                    assert_eq!(buf, data);
                }
                EcnUpdate::NotIp => unreachable!("IPIP always carries IP"),
            }
        }
        Err(_) => assert_eq!(buf, data, "a refused packet is left alone"),
    }
}
