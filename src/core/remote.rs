//! [`Remote`]: a remote VTEP's underlay address, IPv4 or IPv6, in the one form the data path
//! passes around.
//!
//! `std::net::IpAddr` is 17 bytes aligned to 1: returned from a function (an FDB hit, a learn
//! result, a datagram's outer source) it goes through memory and is read back in pieces, which
//! measured 2-9 ns a packet on the IPv4 path against the 4-byte `Ipv4Addr` the core used before
//! it carried IPv6 (BENCHMARKS.md, "The IPv6 underlay's cost to IPv4"). A `Remote` is two
//! 64-bit integers, so it crosses function boundaries in two general registers,
//! `Option<Remote>` too (its niche is a zero upper half), and compares in two instructions.
//! They are two `u64`, not one `u128`: a `u128` is aligned to 16, so the structures and stack
//! slots holding one are padded and it is moved through vector registers, which cost the IPv4
//! path up to 15% in the forwarding micro-benchmarks (BENCHMARKS.md, "The IPv4 gap, fourth
//! pass").
//!
//! The address is taken as IPv6, an IPv4 address as its IPv4-mapped form (`::ffff:a.b.c.d`,
//! RFC 4291 §2.5.5.2); the upper half is kept complemented, so that it is zero only for the
//! addresses of `ffff:ffff:ffff:ffff::/64`, which are stored as `::` instead. Both are
//! unusable as remotes (multicast and unspecified: [`super::UnusableRemote`] refuses them), as
//! are IPv4-mapped IPv6 addresses, which therefore never stand for themselves: a `Remote` is
//! an IPv4 address exactly when its bits are IPv4-mapped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU64;

/// The IPv4-mapped prefix `::ffff:0:0/96` in the low 64 bits, above the IPv4 address's 32.
const V4_MAPPED: u64 = 0xffff_0000_0000;

/// A remote VTEP's underlay address (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Remote {
    /// The complement of the address's upper 64 bits.
    hi: NonZeroU64,
    /// Its lower 64 bits.
    lo: u64,
}

impl Remote {
    /// The remote at IPv6 address bits `bits` (IPv4-mapped for an IPv4 address).
    #[inline]
    const fn from_bits(bits: u128) -> Remote {
        match NonZeroU64::new(!(bits >> 64) as u64) {
            Some(hi) => Remote {
                hi,
                lo: bits as u64,
            },
            // ffff:ffff:ffff:ffff::/64: multicast, never a remote; kept as `::` (also never one).
            None => Remote {
                hi: NonZeroU64::MAX,
                lo: 0,
            },
        }
    }

    /// The IPv6 address bits (IPv4-mapped for an IPv4 remote).
    #[inline]
    const fn bits(self) -> u128 {
        ((!self.hi.get() as u128) << 64) | self.lo as u128
    }

    /// The remote at IPv4 address `a`.
    #[inline]
    pub const fn v4(a: Ipv4Addr) -> Remote {
        Remote::from_bits((V4_MAPPED | a.to_bits() as u64) as u128)
    }

    /// The remote at IPv6 address `a` (an IPv4-mapped `a` is its IPv4 address).
    #[inline]
    pub const fn v6(a: Ipv6Addr) -> Remote {
        Remote::from_bits(a.to_bits())
    }

    /// Its IPv4 address, if it is one.
    #[inline]
    pub const fn as_v4(self) -> Option<Ipv4Addr> {
        if self.hi.get() == u64::MAX && self.lo >> 32 == V4_MAPPED >> 32 {
            Some(Ipv4Addr::from_bits(self.lo as u32))
        } else {
            None
        }
    }

    /// Its IPv6 address, if it is one.
    #[inline]
    pub const fn as_v6(self) -> Option<Ipv6Addr> {
        match self.as_v4() {
            Some(_) => None,
            None => Some(Ipv6Addr::from_bits(self.bits())),
        }
    }

    /// Whether it is an IPv4 address.
    #[inline]
    pub const fn is_ipv4(self) -> bool {
        self.as_v4().is_some()
    }

    /// Its address.
    #[inline]
    pub const fn ip(self) -> IpAddr {
        match self.as_v4() {
            Some(a) => IpAddr::V4(a),
            None => IpAddr::V6(Ipv6Addr::from_bits(self.bits())),
        }
    }
}

impl From<IpAddr> for Remote {
    #[inline]
    fn from(ip: IpAddr) -> Remote {
        match ip {
            IpAddr::V4(a) => Remote::v4(a),
            IpAddr::V6(a) => Remote::v6(a),
        }
    }
}

impl From<Ipv4Addr> for Remote {
    #[inline]
    fn from(a: Ipv4Addr) -> Remote {
        Remote::v4(a)
    }
}

impl From<Ipv6Addr> for Remote {
    #[inline]
    fn from(a: Ipv6Addr) -> Remote {
        Remote::v6(a)
    }
}

impl From<Remote> for IpAddr {
    #[inline]
    fn from(r: Remote) -> IpAddr {
        r.ip()
    }
}

/// `Remote == address` and `address == Remote` for each address type.
macro_rules! eq_address {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Remote {
            fn eq(&self, ip: &$t) -> bool {
                *self == Remote::from(*ip)
            }
        }
        impl PartialEq<Remote> for $t {
            fn eq(&self, r: &Remote) -> bool {
                r == self
            }
        }
    )*};
}
eq_address!(IpAddr, Ipv4Addr, Ipv6Addr);

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.ip(), f)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.ip(), f)
    }
}

impl serde::Serialize for Remote {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ip().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Remote {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Remote, D::Error> {
        IpAddr::deserialize(d).map(Remote::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_and_keep_their_family() {
        for s in [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
            "::1",
            "::192.0.2.1",
            "fe80::1",
            "ff02::1",
            "ffff:ffff:ffff:fffe:ffff:ffff:ffff:ffff",
            "2001:db8::ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            let r = Remote::from(ip);
            assert_eq!(r.ip(), ip, "{s}");
            assert_eq!(r.is_ipv4(), ip.is_ipv4(), "{s}");
            assert_eq!(r, ip);
            assert_eq!(r.to_string(), ip.to_string());
        }
    }

    #[test]
    fn the_two_unusable_edge_cases_fold_as_documented() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            Remote::from(mapped).ip(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        for bits in [u128::MAX, u128::MAX << 64, (u128::MAX << 64) | 1] {
            let ones = IpAddr::V6(Ipv6Addr::from_bits(bits));
            assert_eq!(Remote::from(ones).ip(), "::".parse::<IpAddr>().unwrap());
        }
    }

    #[test]
    fn it_and_its_option_fit_two_registers() {
        assert_eq!(size_of::<Remote>(), 16);
        assert_eq!(size_of::<Option<Remote>>(), 16);
        // Two general registers, not one vector register: aligned as a `u64`, not a `u128`.
        assert_eq!(align_of::<Remote>(), 8);
    }
}
