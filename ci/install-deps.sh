#!/usr/bin/env bash
# Installs everything `make test`, `make bench` and `make demo` need on a fresh
# Debian 12 machine (run as root). Idempotent and quiet when all is present.
set -euo pipefail

APT_PKGS=(
  libipsec-mb-dev   # Intel IPsec Multi-Buffer library: the accelerated crypto driver
  clang libclang-dev lld  # bindgen, and the kernel-object link checks
  tshark            # independent ESP decoder for the interop tests
  openssl           # `openssl speed` baseline in the benchmarks
  zlib1g-dev        # raw deflate/inflate oracle for IPCOMP
  iproute2          # network namespaces for the gateway tests
  python3-pip
)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import scapy.layers.ipsec, cryptography' 2>/dev/null; then
  echo "install-deps: pip install scapy cryptography"
  "$PY" -m pip install -q --disable-pip-version-check "scapy==2.6.1" cryptography
fi

if ! command -v rustup >/dev/null 2>&1; then
  echo "install-deps: installing rustup" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
installed_targets=$(rustup target list --installed)
grep -q '^x86_64-unknown-none$' <<<"$installed_targets" || rustup target add x86_64-unknown-none
installed_comps=$(rustup component list --installed)
for c in rust-src clippy rustfmt; do
  grep -q "^$c" <<<"$installed_comps" || rustup component add "$c"
done
