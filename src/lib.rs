//! vtepd: a userspace VXLAN/IPIP tunnel endpoint.
//!
//! - [`core`]: the sans-IO forwarding core (FDB, flood-and-learn, head-end replication).
//! - The wire codecs live in the `encap` crate.

pub mod core;
