//! `vxlan_decap`: VXLAN decapsulation on arbitrary bytes: the read-only, `&mut` and UDP-payload paths must never
//! panic, must agree, and must stay inside the input.

use crate::frames::fix_ipv4_checksum;
use encap::tunnel::vxlan;
use encap::{EcnUpdate, ecn};

/// The target's body.
pub fn run(data: &[u8]) {
    check(data);
    // Again with a valid outer header checksum and no UDP checksum, to reach the inner layers.
    let mut fixed = data.to_vec();
    if let Some(hl) = fix_ipv4_checksum(&mut fixed, 0) {
        if let Some(c) = fixed.get_mut(hl + 6..hl + 8) {
            c.fill(0);
        }
        check(&fixed);
    }
}

fn check(data: &[u8]) {
    // The first byte picks the expected port, so both a match and a mismatch are explored.
    let port = if data.first().is_some_and(|b| b & 1 == 1) {
        8472
    } else {
        4789
    };
    let ro = vxlan::decapsulate(data, port);
    let mut buf = data.to_vec();
    let rw = vxlan::decapsulate_mut(&mut buf, port);
    assert_eq!(ro, rw);
    match rw {
        Ok(rx) => {
            assert!(rx.inner.start <= rx.inner.end && rx.inner.end <= data.len());
            assert!(rx.inner.len() >= 14);
            // Outside the inner IP header's ECN byte and checksum, nothing changed.
            assert_eq!(buf[..rx.inner.start], data[..rx.inner.start]);
            if let EcnUpdate::Set(_) = rx.ecn {
                // Applying the update is idempotent: a second pass has nothing left to change.
                // (The inner frame changed under the outer UDP checksum: clear that first.)
                let mut second = buf.clone();
                let csum_at = usize::from(data[0] & 0x0f) * 4 + 6;
                second[csum_at..csum_at + 2].fill(0);
                let again = vxlan::decapsulate(&second, port).unwrap();
                assert!(matches!(again.ecn, EcnUpdate::Keep(_)), "{:?}", again.ecn);
            } else {
                assert_eq!(buf, data);
            }
        }
        Err(_) => assert_eq!(buf, data, "a refused packet is left alone"),
    }
    if let Ok((_, r)) = vxlan::decapsulate_udp_payload(data) {
        assert!(r.end == data.len() && r.start == 8);
        let mut frame = data[r].to_vec();
        let outer_tos = data[0];
        let _ = ecn::decapsulate_frame(&mut frame, outer_tos);
    }
}
