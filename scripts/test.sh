#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check and test.
# Needs root (debootstrap, and unshare/chroot to run Asterisk in its own namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (1.85 or newer) first" >&2
  exit 1
fi
export QUEUEBRIDGE_ASTERISK_ROOT
QUEUEBRIDGE_ASTERISK_ROOT=$(scripts/asterisk-rootfs)
echo "== Asterisk: $(chroot "$QUEUEBRIDGE_ASTERISK_ROOT" /usr/sbin/asterisk -V)"
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
echo "== tests (unit, property, trace replay, end to end against real Asterisk)"
cargo test --locked
echo "== benchmark and fuzz target compile"
cargo bench --locked --no-run
