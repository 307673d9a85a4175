//! vtepd: a userspace VXLAN/IPIP tunnel endpoint.
//!
//! - [`core`]: the sans-IO forwarding core (FDB, flood-and-learn, head-end replication).
//! - [`cli`] and [`config`]: the command line and the validated daemon configuration.
//! - [`daemon`]: `vtepd run` (TAP devices, UDP socket, dataplane worker, signals).
//! - [`control`]: the control socket protocol, its server and the client subcommands.
//! - [`sys`]: the only module with `unsafe` (two socket calls).
//! - The wire codecs live in the `encap` crate.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod error;
pub mod sys;
