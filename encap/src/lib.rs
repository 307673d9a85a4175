//! Zero-copy wire codecs for vtepd: VXLAN over IPv4/UDP (RFC 7348) and IPIP (RFC 2003).
//!
//! # Contract
//! - No I/O and no allocation: every function works on caller-provided byte buffers.
//! - `#![forbid(unsafe_code)]`.
//! - No panics on any input: every view is created through a `new_checked` that validates lengths,
//!   after which no accessor can index out of bounds; every error says which layer was short or
//!   invalid and by how much.
#![forbid(unsafe_code)]
#![no_std]

pub mod error;
pub mod ethernet;
pub mod vxlan;

pub use error::{Error, Invalid, Layer, Result};
pub use ethernet::MacAddr;
pub use vxlan::Vni;
