//! The fuzz targets' bodies. Each module is one target (`fuzz_targets/<name>.rs` calls its
//! `run`); the replay test below runs every file of the checked-in corpus
//! (`corpus/<name>/`) through the same bodies, so `cargo test` checks the corpus, and every
//! crash kept there as a regression, without libFuzzer.

/// Prints what a target does, step by step, when `VTEPD_FUZZ_TRACE` is set (to read what a
/// crashing input did: `VTEPD_FUZZ_TRACE=1 cargo fuzz run <target> <input>`).
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            eprintln!($($t)*);
        }
    };
}

/// Whether [`trace!`] prints.
pub fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VTEPD_FUZZ_TRACE").is_some())
}

pub mod frames;
pub mod input;

pub mod arp;
pub mod config_toml;
pub mod control_request;
pub mod core_ops;
pub mod gro;
pub mod ipip_decap;
pub mod ipip_engine;
pub mod l3vx_engine;
pub mod recv_split;
pub mod vxlan_decap;

#[cfg(test)]
mod seeds;

/// A target's body: one input, a panic on a failed invariant.
pub type Body = fn(&[u8]);

/// Every target: its name (the binary's and the corpus folder's) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("vxlan_decap", vxlan_decap::run),
    ("ipip_decap", ipip_decap::run),
    ("core_ops", core_ops::run),
    ("ipip_engine", ipip_engine::run),
    ("l3vx_engine", l3vx_engine::run),
    ("arp", arp::run),
    ("gro", gro::run),
    ("recv_split", recv_split::run),
    ("control_request", control_request::run),
    ("config_toml", config_toml::run),
];

#[cfg(test)]
mod replay {
    use super::TARGETS;
    use std::path::Path;

    /// Every checked-in corpus file through its target's body (what CI runs).
    #[test]
    fn the_checked_in_corpus_replays_without_a_failure() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut total = 0;
        let mut failed = Vec::new();
        for (name, run) in TARGETS {
            let dir = root.join(name);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "{name}: no corpus");
            for f in &files {
                let data = std::fs::read(f).unwrap();
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    failed.push(f.display().to_string());
                }
            }
            eprintln!("{name}: {} inputs replayed", files.len());
            total += files.len();
        }
        eprintln!("{total} inputs replayed");
        assert!(failed.is_empty(), "failing inputs: {failed:#?}");
    }

    /// One input through one target, traced: `VTEPD_FUZZ_TRACE=1 VTEPD_FUZZ_TARGET=core_ops
    /// VTEPD_FUZZ_FILE=path cargo test --lib -- --ignored replay_one --nocapture`.
    #[test]
    #[ignore = "replays the input named by VTEPD_FUZZ_TARGET and VTEPD_FUZZ_FILE"]
    fn replay_one() {
        let target = std::env::var("VTEPD_FUZZ_TARGET").expect("VTEPD_FUZZ_TARGET");
        let file = std::env::var("VTEPD_FUZZ_FILE").expect("VTEPD_FUZZ_FILE");
        let (_, run) = TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .expect("a target's name");
        run(&std::fs::read(file).unwrap());
    }
}
