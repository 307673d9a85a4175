//! ECN through a tunnel (RFC 6040, "normal mode").
//!
//! Encapsulation copies the inner ECN field to the outer header, except that CE becomes ECT(0)
//! (as Linux's `INET_ECN_encapsulate` does, so that the outer header never starts out congested).
//! Decapsulation combines the outer and inner fields with the RFC 6040 §4.2 table; an outer CE
//! over an inner Not-ECT packet must be dropped.

use crate::error::{Error, Invalid, Layer, Result};
use crate::flow;
pub use crate::ipv4::Ecn;

/// The outer ECN field for an inner one (RFC 6040 §4.1 normal mode, CE copied as ECT(0)).
#[inline]
pub const fn encapsulate(inner: Ecn) -> Ecn {
    match inner {
        Ecn::Ce => Ecn::Ect0,
        e => e,
    }
}

/// The inner ECN field after decapsulation (RFC 6040 §4.2 table), or an error when the packet must
/// be dropped (outer CE, inner Not-ECT).
///
/// ```text
///                 outer:  Not-ECT   ECT(0)    ECT(1)    CE
///  inner Not-ECT          Not-ECT   Not-ECT   Not-ECT   drop
///  inner ECT(0)           ECT(0)    ECT(0)    ECT(1)    CE
///  inner ECT(1)           ECT(1)    ECT(1)    ECT(1)    CE
///  inner CE               CE        CE        CE        CE
/// ```
#[inline]
pub const fn decapsulate(outer: Ecn, inner: Ecn) -> Result<Ecn> {
    match (inner, outer) {
        (Ecn::NotEct, Ecn::Ce) => Err(Error::invalid(Layer::Ipv4, Invalid::EcnCeOverNotEct)),
        (Ecn::NotEct, _) => Ok(Ecn::NotEct),
        (Ecn::Ce, _) | (_, Ecn::Ce) => Ok(Ecn::Ce),
        (Ecn::Ect0, Ecn::Ect1) => Ok(Ecn::Ect1),
        (i, _) => Ok(i),
    }
}

/// True for the combinations RFC 6040 §4.2 marks "(!!!)": they can only come from a broken or
/// malicious node, and an implementation should log them (the drop case is reported as an error).
pub const fn is_unexpected(outer: Ecn, inner: Ecn) -> bool {
    matches!(
        (inner, outer),
        (Ecn::NotEct, Ecn::Ect0) | (Ecn::NotEct, Ecn::Ect1) | (Ecn::Ce, Ecn::Ect1)
    )
}

/// What decapsulation does to the inner packet's ECN field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcnUpdate {
    /// The inner payload has no readable IP header: nothing to combine.
    NotIp,
    /// The inner field stays as it is.
    Keep(Ecn),
    /// The inner field must become this value (the `_mut` decapsulators have written it).
    Set(Ecn),
}

/// Combines an outer TOS byte with an inner TOS / traffic-class byte.
pub(crate) fn decide(outer_tos: u8, inner_tos: u8) -> Result<EcnUpdate> {
    let inner = Ecn::from_tos(inner_tos);
    let out = decapsulate(Ecn::from_tos(outer_tos), inner)?;
    Ok(if out == inner {
        EcnUpdate::Keep(inner)
    } else {
        EcnUpdate::Set(out)
    })
}

/// Writes `ecn` into an IP header at the start of `ip`: for IPv4 with an incremental checksum
/// update, for IPv6 into the traffic class. The caller has checked the fixed header is present.
pub(crate) fn write_ip_ecn(ip: &mut [u8], is_ipv4: bool, ecn: Ecn) {
    if is_ipv4 {
        crate::ipv4::Ipv4Packet::new_unchecked(ip).set_ecn_incremental(ecn);
    } else {
        // Traffic class = low nibble of byte 0 and high nibble of byte 1; ECN = its two low bits.
        ip[1] = (ip[1] & !0x30) | (ecn.bits() << 4);
    }
}

/// Applies RFC 6040 decapsulation to an inner Ethernet frame in place, given the outer TOS byte
/// (e.g. from `IP_RECVTOS` when the kernel stripped the outer headers). Returns what was done.
pub fn decapsulate_frame(frame: &mut [u8], outer_tos: u8) -> Result<EcnUpdate> {
    let Some(ip) = flow::frame_ip(frame) else {
        return Ok(EcnUpdate::NotIp);
    };
    let upd = decide(outer_tos, ip.tos)?;
    if let EcnUpdate::Set(e) = upd {
        write_ip_ecn(&mut frame[ip.offset..], ip.is_ipv4, e);
    }
    Ok(upd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ecn::*;

    #[test]
    fn encapsulation_copies_and_hides_ce() {
        assert_eq!(encapsulate(NotEct), NotEct);
        assert_eq!(encapsulate(Ect0), Ect0);
        assert_eq!(encapsulate(Ect1), Ect1);
        assert_eq!(encapsulate(Ce), Ect0);
    }

    #[test]
    fn rfc6040_decapsulation_table() {
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE. None = drop.
        let table: [(Ecn, [Option<Ecn>; 4]); 4] = [
            (NotEct, [Some(NotEct), Some(NotEct), Some(NotEct), None]),
            (Ect0, [Some(Ect0), Some(Ect0), Some(Ect1), Some(Ce)]),
            (Ect1, [Some(Ect1), Some(Ect1), Some(Ect1), Some(Ce)]),
            (Ce, [Some(Ce), Some(Ce), Some(Ce), Some(Ce)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NotEct, Ect0, Ect1, Ce].into_iter().zip(row) {
                let got = decapsulate(outer, inner);
                match want {
                    Some(w) => assert_eq!(got, Ok(w), "outer {outer:?} inner {inner:?}"),
                    None => assert_eq!(
                        got,
                        Err(Error::invalid(Layer::Ipv4, Invalid::EcnCeOverNotEct)),
                        "outer {outer:?} inner {inner:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn unexpected_combinations() {
        assert!(is_unexpected(Ect0, NotEct));
        assert!(is_unexpected(Ect1, NotEct));
        assert!(is_unexpected(Ect1, Ce));
        assert!(!is_unexpected(Ce, Ect0));
        assert!(!is_unexpected(NotEct, NotEct));
    }
}
