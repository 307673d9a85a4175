//! [`Remote`]: a remote VTEP's underlay address, IPv4 or IPv6, in the one form the data path
//! passes around.
//!
//! `std::net::IpAddr` is 17 bytes aligned to 1: returned from a function (an FDB hit, a learn
//! result, a datagram's outer source) it goes through memory and is read back in pieces, which
//! measured 2-9 ns a packet on the IPv4 path against the 4-byte `Ipv4Addr` the core used before
//! it carried IPv6 (BENCHMARKS.md, "The IPv6 underlay's cost to IPv4"). A `Remote` is one
//! 128-bit integer, so it crosses function boundaries in two registers, `Option<Remote>` too
//! (its niche is zero), and compares in two instructions.
//!
//! The integer is the bitwise complement of the IPv6 address, an IPv4 address taken as its
//! IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so that no address maps to
//! zero except `ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`, which is stored as `::` instead. Both
//! are unusable as remotes ([`super::UnusableRemote`] refuses them), as are IPv4-mapped IPv6
//! addresses, which therefore never stand for themselves: a `Remote` is an IPv4 address
//! exactly when its bits are IPv4-mapped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU128;

/// The IPv4-mapped prefix `::ffff:0:0/96`, above the IPv4 address's 32 bits.
const V4_MAPPED: u128 = 0xffff_0000_0000;

/// A remote VTEP's underlay address (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Remote(NonZeroU128);

impl Remote {
    /// The remote at IPv6 address bits `bits` (IPv4-mapped for an IPv4 address).
    #[inline]
    const fn from_bits(bits: u128) -> Remote {
        match NonZeroU128::new(!bits) {
            Some(n) => Remote(n),
            // All ones: a multicast address, never a remote; kept as `::` (also never one).
            None => Remote(NonZeroU128::MAX),
        }
    }

    /// The IPv6 address bits (IPv4-mapped for an IPv4 remote).
    #[inline]
    const fn bits(self) -> u128 {
        !self.0.get()
    }

    /// The remote at IPv4 address `a`.
    #[inline]
    pub const fn v4(a: Ipv4Addr) -> Remote {
        Remote::from_bits(V4_MAPPED | a.to_bits() as u128)
    }

    /// The remote at IPv6 address `a` (an IPv4-mapped `a` is its IPv4 address).
    #[inline]
    pub const fn v6(a: Ipv6Addr) -> Remote {
        Remote::from_bits(a.to_bits())
    }

    /// Its IPv4 address, if it is one.
    #[inline]
    pub const fn as_v4(self) -> Option<Ipv4Addr> {
        let b = self.bits();
        if b >> 32 == V4_MAPPED >> 32 {
            Some(Ipv4Addr::from_bits(b as u32))
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
        let ones = IpAddr::V6(Ipv6Addr::from_bits(u128::MAX));
        assert_eq!(Remote::from(ones).ip(), "::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn it_and_its_option_fit_two_registers() {
        assert_eq!(size_of::<Remote>(), 16);
        assert_eq!(size_of::<Option<Remote>>(), 16);
    }
}
