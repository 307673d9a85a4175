//! `ipip_decap`: IPIP decapsulation on arbitrary bytes: the read-only and `&mut` paths must never panic, must
//! agree, and must stay inside the input; an accepted inner header must verify after the ECN update.

use crate::frames::fix_ipv4_checksum;
use encap::EcnUpdate;
use encap::ipv4::Ipv4Packet;
use encap::tunnel::ipip;

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
            let inner = Ipv4Packet::new_checked(&buf[rx.inner.clone()]).unwrap();
            assert!(
                inner.verify_checksum(),
                "the incremental ECN update kept the checksum valid"
            );
            match rx.ecn {
                EcnUpdate::Set(e) => assert_eq!(inner.ecn(), e),
                EcnUpdate::Keep(e) => {
                    assert_eq!(inner.ecn(), e);
                    assert_eq!(buf, data);
                }
                EcnUpdate::NotIp => unreachable!("IPIP always carries IPv4"),
            }
        }
        Err(_) => assert_eq!(buf, data, "a refused packet is left alone"),
    }
}
