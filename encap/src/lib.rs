//! Zero-copy wire codecs for vtepd: VXLAN over IPv4/UDP and IPv6/UDP (RFC 7348) and IPIP (RFC 2003), with the
//! Ethernet, 802.1Q, ARP, IPv4 and UDP views they need, RFC 6040 ECN handling and the Internet
//! checksum.
//!
//! # Contract
//! - No I/O and no allocation: every function works on caller-provided byte buffers (`#![no_std]`,
//!   no `alloc`).
//! - `#![forbid(unsafe_code)]`.
//! - No panics on any input: every view is created through a `new_checked` that validates lengths,
//!   after which no accessor can index out of bounds; every parse, encapsulate and decapsulate entry
//!   point returns an [`Error`] instead. Only `new_unchecked` views skip the check (their accessors
//!   may panic on short buffers, as documented). The tests feed every truncated length and random
//!   bytes to every entry point, and the `fuzz/` crate does the same for the decapsulators.
//! - Every error says which layer was short or invalid and by how much ([`Error::Truncated`] carries
//!   the bytes needed and the bytes there).
//!
//! # Layout
//! Views (`Packet<T: AsRef<[u8]>>`, getters on `AsRef`, setters on `AsMut`) and owned `Repr`s with
//! `parse`/`emit`, modelled on smoltcp's `wire` module: [`ethernet`], [`arp`], [`ipv4`], [`udp`],
//! [`vxlan`]. Whole encapsulations: [`tunnel::vxlan`] and [`tunnel::ipip`]. Helpers: [`checksum`],
//! [`ecn`], [`flow`] (inner-flow hash and source port range).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), no_std)]

pub mod arp;
pub mod checksum;
pub mod ecn;
pub mod error;
pub mod ethernet;
pub mod flow;
pub mod ipv4;
pub mod tunnel;
pub mod udp;
pub mod vxlan;

pub use ecn::{Ecn, EcnUpdate};
pub use error::{Error, Invalid, Layer, Result};
pub use ethernet::{EthernetFrame, EthernetRepr, MacAddr, VlanId, VlanTag};
pub use flow::PortRange;
pub use tunnel::ipip::{IpipConfig, IpipEncap, IpipRx};
pub use tunnel::vxlan::{VxlanConfig, VxlanEncap, VxlanRx, VxlanTx};
pub use tunnel::vxlan6::Vxlan6Encap;
pub use tunnel::{Df, Dscp, Ttl};
pub use vxlan::Vni;
