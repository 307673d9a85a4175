//! The control plane: a Unix socket speaking one JSON line each way, its server (in the
//! daemon), its client (the `fdb`, `peers` and `stats` subcommands) and their output.

pub mod client;
pub mod output;
pub mod protocol;
pub mod server;
