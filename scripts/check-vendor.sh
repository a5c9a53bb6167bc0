#!/usr/bin/env bash
# Prove that vendor/rustls is the rustls release named in its Cargo.toml, exactly as
# published on crates.io, plus vendor/rustls.patch and nothing else (see vendor/README.md).
# Fetches the published crate through cargo (the registry cargo is configured with), unpacks
# it, applies the patch and compares the trees. Exit status 0: identical.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ver=$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/rustls/Cargo.toml | head -n 1)
[ -n "$ver" ] || { echo "check-vendor: no version in vendor/rustls/Cargo.toml" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A throwaway package that depends on exactly that release, so cargo downloads its .crate.
mkdir -p "$tmp/probe/src"
echo 'fn main() {}' > "$tmp/probe/src/main.rs"
cat > "$tmp/probe/Cargo.toml" <<TOML
[package]
name = "vendor-probe"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rustls = { version = "=$ver", default-features = false }

[workspace]
TOML
(cd "$tmp/probe" && cargo fetch --quiet)
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"rustls-$ver.crate" 2>/dev/null | head -n 1)
[ -n "$crate" ] || { echo "check-vendor: cargo did not fetch rustls-$ver.crate" >&2; exit 1; }

tar xzf "$crate" -C "$tmp"
(cd "$tmp/rustls-$ver" && git apply -p1 "$ROOT/vendor/rustls.patch")
if ! diff -r "$tmp/rustls-$ver" vendor/rustls; then
    echo "check-vendor: vendor/rustls differs from rustls $ver + vendor/rustls.patch" >&2
    exit 1
fi
echo "check-vendor: vendor/rustls is rustls $ver from crates.io + vendor/rustls.patch"
