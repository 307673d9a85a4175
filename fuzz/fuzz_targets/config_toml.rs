//! `config_toml`: see `src/config_toml.rs` for what it drives and the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vtepd_fuzz::config_toml::run(data));
