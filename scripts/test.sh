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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
echo "== benchmark compiles"
cargo bench --locked --no-run
passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' "$log")
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' "$log")
echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
