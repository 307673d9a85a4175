//! `ipip_engine`: see `src/ipip_engine.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::ipip_engine::run(data));
