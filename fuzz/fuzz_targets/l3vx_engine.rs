//! `l3vx_engine`: see `src/l3vx_engine.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::l3vx_engine::run(data));
