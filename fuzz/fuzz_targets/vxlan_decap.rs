//! `vxlan_decap`: see `src/vxlan_decap.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::vxlan_decap::run(data));
