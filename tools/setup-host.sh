#!/usr/bin/env bash
# Prepare a Debian 12 host (as root) to build, load and test xdpmon programs.
# Idempotent: every step checks first and does nothing when already done, so a second
# run only verifies (a few seconds). Safe to run from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SYS_PY=/usr/bin/python3
VENV="$ROOT/.venv"
STAMP="$VENV/.xdpmon-installed"
KREL="$(uname -r)"
KMOD="/lib/modules/$KREL"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"

dpkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# Newest installed Debian header tree for this architecture (e.g. linux-headers-6.1.0-56-amd64).
newest_headers() {
    local d
    d="$(ls -d /usr/src/linux-headers-*-"$ARCH" 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$d" ] && [ -d "$d/include" ] && printf '%s\n' "$d"
}

# --- (a) system packages -------------------------------------------------------------
missing=()
if ! [ -x "$SYS_PY" ] || ! "$SYS_PY" -c 'import bcc' >/dev/null 2>&1; then
    missing+=(python3-bpfcc)
fi
dpkg_installed bpfcc-tools || missing+=(bpfcc-tools)
if ! [ -d "$KMOD/build/include" ] && [ -z "$(newest_headers)" ]; then
    missing+=("linux-headers-$ARCH")
fi
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# Debian's python3 ships without ensurepip unless python3-venv is installed.
dpkg_installed python3-venv || missing+=(python3-venv)
command -v make >/dev/null 2>&1 || missing+=(make)

if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to install: ${missing[*]}"
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "system packages present"
fi

# --- (b) kernel headers where BCC looks for them -------------------------------------
# BCC compiles every program with clang against /lib/modules/$(uname -r)/build (and
# .../source) for its include paths. This kernel has no matching headers package, so we
# point those links at the newest Debian header tree instead. That is enough for XDP
# programs: they use only the UAPI and generic headers (linux/bpf.h, if_ether.h, ip.h,
# ...), whose layouts are a stable ABI, and no kernel config or struct internals.
# No module is built, so no module ABI (vermagic, symbol versions) is involved; the
# verifier checks the loaded program against the running kernel anyway.
if ! [ -e "$KMOD/build/include" ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to create $KMOD/build"
    hdr="$(newest_headers)" || die "no /usr/src/linux-headers-*-$ARCH found"
    common="${hdr%-"$ARCH"}-common"
    [ -d "$common" ] || die "missing $common (next to $hdr)"
    mkdir -p "$KMOD"
    ln -sfn "$hdr" "$KMOD/build"
    ln -sfn "$common" "$KMOD/source"
    say "linked $KMOD/build -> $hdr, source -> $common"
else
    say "kernel headers: $(readlink -f "$KMOD/build")"
fi

# --- (c) project venv ----------------------------------------------------------------
# bcc is not on PyPI: the venv sees the system site packages, where python3-bpfcc lives.
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        grep -qE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null &&
        grep -qE "^executable *= *$SYS_PY(\.[0-9]+)?$|^home *= */usr/bin$" "$VENV/pyvenv.cfg" 2>/dev/null
}
if ! venv_ok; then
    [ -e "$VENV" ] && say "recreating $VENV (not a system-site-packages venv of $SYS_PY)"
    rm -rf "$VENV"
    say "creating $VENV"
    "$SYS_PY" -m venv --system-site-packages "$VENV"
fi

# Reinstall when pyproject.toml changes, or when a top-level package appears: the
# editable install maps the top-level package names that existed when it ran.
want="$( { cat pyproject.toml; ls -d dsl/__init__.py compiler/__init__.py \
    runtime/__init__.py codegen_templates/__init__.py 2>/dev/null || true; } |
    sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    say "pip install -e '.[test,bench]'"
    "$VENV/bin/python" -m pip install -q -e '.[test,bench]'
    printf '%s\n' "$want" >"$STAMP"
else
    say "python packages up to date"
fi

# --- (d) verify ------------------------------------------------------------------------
"$VENV/bin/python" -c 'import bcc, lark, jinja2' ||
    die "venv cannot import bcc, lark, jinja2"
say "ok"
