#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check and test.
# Needs root (debootstrap, and unshare/chroot to run Asterisk in its own namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (1.85 or newer) first" >&2
  exit 1
fi
# Installs Debian packages, refreshing the package lists once first (a fresh machine has none).
updated=
install() {
  if [ -z "$updated" ]; then apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# make and a C compiler build jemalloc, the binary's allocator (tikv-jemalloc-sys)
if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
  install make gcc libc6-dev
fi
export QUEUEBRIDGE_ASTERISK_ROOT
QUEUEBRIDGE_ASTERISK_ROOT=$(scripts/asterisk-rootfs)
echo "== Asterisk: $(chroot "$QUEUEBRIDGE_ASTERISK_ROOT" /usr/sbin/asterisk -V)"
echo "== Prometheus and promtool for the metrics tests"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  install prometheus
fi
systemctl disable --now prometheus >/dev/null 2>&1 || true
echo "== Prosody and a real XMPP client (slixmpp) for the XMPP tests"
if ! command -v prosody >/dev/null; then
  install prosody
fi
# The package's own service is not needed: each test runs its own Prosody on free ports.
systemctl disable --now prosody >/dev/null 2>&1 || true
if ! command -v python3 >/dev/null; then
  install python3 python3-venv
fi
export QUEUEBRIDGE_PYTHON=/var/cache/queuebridge/python/bin/python
if ! "$QUEUEBRIDGE_PYTHON" -c 'import slixmpp' 2>/dev/null; then
  python3 -m venv /var/cache/queuebridge/python 2>/dev/null || {
    install python3-venv
    rm -rf /var/cache/queuebridge/python
    python3 -m venv /var/cache/queuebridge/python
  }
  "$QUEUEBRIDGE_PYTHON" -m pip install --quiet 'slixmpp==1.17.0'
fi
# schemathesis checks the PortSIP dialect against PortSIP's OpenAPI file (tests/portsip_schema.rs);
# websockets is the real client of the event-push tests (tests/clients/ws_client.py)
if ! "$QUEUEBRIDGE_PYTHON" -c 'import schemathesis, websockets' 2>/dev/null; then
  "$QUEUEBRIDGE_PYTHON" -m pip install --quiet 'schemathesis==4.32.5' 'websockets==17.4'
fi
echo "== Prosody $(dpkg-query -W -f='${Version}' prosody), slixmpp $("$QUEUEBRIDGE_PYTHON" -c 'import slixmpp; print(slixmpp.__version__)'), schemathesis $("$QUEUEBRIDGE_PYTHON" -c 'import importlib.metadata as m; print(m.version("schemathesis"))')"
echo "== systemd-nspawn, cargo-deb and a Debian 12 root for the package test"
if ! command -v systemd-nspawn >/dev/null || ! command -v systemd-analyze >/dev/null; then
  install systemd systemd-container
fi
# pgrep and kill (the tests signal the processes they started by PID)
if ! command -v pgrep >/dev/null || ! command -v kill >/dev/null; then
  install procps
fi
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.'; then
  cargo install --quiet --locked cargo-deb --version '~3.8'
fi
export QUEUEBRIDGE_DEBIAN_ROOT
QUEUEBRIDGE_DEBIAN_ROOT=$(scripts/debian-rootfs)
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
echo "== the Debian package (cargo deb), installed and run under systemd by tests/package.rs"
export QUEUEBRIDGE_DEB="$PWD/target/debian/queuebridge.deb"
cargo deb --locked --output "$QUEUEBRIDGE_DEB"
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
