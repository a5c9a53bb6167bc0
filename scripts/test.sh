#!/usr/bin/env bash
# The project's test command: Rust unit/integration tests, then the Python
# end-to-end suite in tests/ against the freshly built server binary.
# Works on a fresh clone: creates .venv and installs tests/requirements.txt.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if command -v mold >/dev/null 2>&1; then
    export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
fi

# --- Python environment for the integration tests ---------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PY" -m venv .venv
fi
REQ_STAMP=.venv/.requirements.sha256
REQ_SUM=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -f "$REQ_STAMP" ] || [ "$(cat "$REQ_STAMP")" != "$REQ_SUM" ]; then
    echo "==> installing tests/requirements.txt into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    echo "$REQ_SUM" > "$REQ_STAMP"
fi

# --- Rust ----------------------------------------------------------------
echo "==> scripts/check-vendor.sh (vendored crates are the published ones plus our patches)"
./scripts/check-vendor.sh
echo "==> cargo build --workspace"
cargo build --workspace
echo "==> cargo test --workspace"
cargo test --workspace

# --- End-to-end ----------------------------------------------------------
echo "==> pytest tests"
export RAMPART_BIN="$ROOT/target/debug/rampart"
exec .venv/bin/python -m pytest tests -q "$@"
