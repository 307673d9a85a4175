#!/usr/bin/env bash
# Builds what a package installs: the release binary, and from it (its own clap definitions, so
# they cannot drift from the flags it takes) the manual pages and shell completions, into
# target/dist/. `scripts/dist.sh --deb` then makes the Debian package with cargo-deb
# ([package.metadata.deb] in Cargo.toml points at these files). Non-interactive.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin vtepd
bin=target/release/vtepd
out=target/dist
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"

"$bin" man --out-dir "$out/man"
# Debian policy: manual pages compressed with gzip -9n (no name or time stamp: reproducible).
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/vtepd.bash"
"$bin" completions zsh >"$out/completions/_vtepd"
"$bin" completions fish >"$out/completions/vtepd.fish"
echo "dist: $(ls "$out/man" | wc -l) manual pages and 3 completion scripts in $out"

if [ "${1:-}" = "--deb" ]; then
    command -v cargo-deb >/dev/null 2>&1 || {
        echo "dist: cargo-deb is not installed (cargo install cargo-deb --locked)" >&2
        exit 1
    }
    cargo deb --no-build --locked -p vtepd
fi
