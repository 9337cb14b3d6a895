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
echo "== Prometheus and promtool for the metrics tests"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null
fi
systemctl disable --now prometheus >/dev/null 2>&1 || true
echo "== Prosody and a real XMPP client (slixmpp) for the XMPP tests"
if ! command -v prosody >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prosody >/dev/null
fi
# The package's own service is not needed: each test runs its own Prosody on free ports.
systemctl disable --now prosody >/dev/null 2>&1 || true
export QUEUEBRIDGE_PYTHON=/var/cache/queuebridge/python/bin/python
if ! "$QUEUEBRIDGE_PYTHON" -c 'import slixmpp' 2>/dev/null; then
  python3 -m venv /var/cache/queuebridge/python 2>/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null
    python3 -m venv /var/cache/queuebridge/python
  }
  "$QUEUEBRIDGE_PYTHON" -m pip install --quiet 'slixmpp==1.17.0'
fi
echo "== Prosody $(dpkg-query -W -f='${Version}' prosody), slixmpp $("$QUEUEBRIDGE_PYTHON" -c 'import slixmpp; print(slixmpp.__version__)')"
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
