//! Packaging: both crates can be packaged (`cargo package --list`, offline) with their license
//! files, README and, for vtepd, the unit file; the license files match `license`; the path
//! dependency on encap carries encap's version; the Debian package's assets exist in the
//! repository or are what `scripts/dist.sh` generates.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `cargo package --list` of `package`: the files its .crate would hold.
fn package_list(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(root())
        .args([
            "package",
            "--list",
            "--offline",
            "--allow-dirty",
            "-p",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo package -p {package}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn both_crates_package_with_their_licenses() {
    for (package, extra) in [
        ("encap", &[][..]),
        ("vtepd", &["dist/vtepd.service", "dist/vtepd.toml"][..]),
    ] {
        let files = package_list(package);
        for f in ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"]
            .iter()
            .chain(extra)
        {
            assert!(
                files.iter().any(|l| l == f),
                "{package} lacks {f}: {files:?}"
            );
        }
        assert!(!files.iter().any(|l| l.starts_with(".ci/")), "{files:?}");
    }
}

#[test]
fn licenses_and_versions_agree() {
    let ws = manifest(&root().join("Cargo.toml"));
    let wp = &ws["workspace"]["package"];
    assert_eq!(wp["license"].as_str(), Some("MIT OR Apache-2.0"));
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string(root().join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    for f in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let a = std::fs::read(root().join(f)).unwrap();
        assert_eq!(
            std::fs::read(root().join("encap").join(f)).unwrap(),
            a,
            "{f}"
        );
    }
    // encap's version is the workspace's, and the path dependency names it.
    let dep = &ws["workspace"]["dependencies"]["encap"];
    assert_eq!(dep["version"].as_str(), wp["version"].as_str());
    let encap = manifest(&root().join("encap/Cargo.toml"));
    assert_eq!(
        encap["package"]["version"]["workspace"].as_bool(),
        Some(true)
    );
}

#[test]
fn deb_assets_exist_or_are_generated_by_dist_sh() {
    let ws = manifest(&root().join("Cargo.toml"));
    let deb = &ws["package"]["metadata"]["deb"];
    let dist = std::fs::read_to_string(root().join("scripts/dist.sh")).unwrap();
    let assets = deb["assets"].as_array().unwrap();
    let mut targets = Vec::new();
    for a in assets {
        let [src, dst, mode] = a.as_array().unwrap().as_slice() else {
            panic!("asset {a}")
        };
        let (src, dst) = (src.as_str().unwrap(), dst.as_str().unwrap());
        assert!(
            mode.as_str().is_some_and(|m| m == "644" || m == "755"),
            "{a}"
        );
        if src == "target/release/vtepd" {
            assert!(dist.contains("cargo build --release --locked --bin vtepd"));
        } else if let Some(generated) = src.strip_prefix("target/dist/") {
            // dist.sh writes it: `.../man/*.1.gz` or `.../completions/<name>`.
            let name = generated.rsplit('/').next().unwrap();
            let pattern = name.trim_end_matches(".gz").trim_start_matches('*');
            assert!(dist.contains(pattern), "dist.sh does not write {src}");
        } else {
            assert!(root().join(src).is_file(), "{src} is missing");
        }
        targets.push(dst.to_owned());
    }
    for want in [
        "usr/bin/",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/vtepd",
        "usr/share/zsh/vendor-completions/_vtepd",
        "usr/share/fish/vendor_completions.d/vtepd.fish",
    ] {
        assert!(
            targets.iter().any(|t| t == want),
            "nothing installed to {want}"
        );
    }
    let units = &deb["systemd-units"];
    let dir = units["unit-scripts"].as_str().unwrap();
    assert!(root().join(dir).join("vtepd.service").is_file());
    // Not started on install: it needs /etc/vtepd/vtepd.toml first.
    assert_eq!(units["start"].as_bool(), Some(false));
    assert_eq!(units["enable"].as_bool(), Some(false));
}
