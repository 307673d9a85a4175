//! `recv_split`: see `src/recv_split.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::recv_split::run(data));
