//! `control_request`: see `src/control_request.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::control_request::run(data));
