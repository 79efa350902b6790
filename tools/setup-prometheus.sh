#!/usr/bin/env bash
# Install Prometheus for the fleet test and demo (examples/fleet/): Debian 12's `prometheus`
# package, which brings `prometheus` and `promtool`. Called by `make test` and `make
# fleet-demo`; idempotent and quick when both are present (nothing else is checked then).
#
# The package starts a system Prometheus when it is installed (its postinst runs
# invoke-rc.d, and deb-systemd-invoke where systemd runs) and enables it at boot. The fleet
# runs Prometheus servers of its own (own configs, data under a temporary directory, in a
# network namespace of its own), so this script keeps the system one from starting: a
# policy-rc.d that forbids every start while apt runs (where none exists; it is removed
# after), then `systemctl disable --now` where systemd runs, or the init script's stop and
# `update-rc.d disable` where it does not, and it checks that no system Prometheus (user
# `prometheus`) runs at the end. A Prometheus that was installed before is left as it is.
set -euo pipefail

say() { printf 'setup-prometheus: %s\n' "$*"; }
die() { printf 'setup-prometheus: error: %s\n' "$*" >&2; exit 1; }

PKG=prometheus
POLICY=/usr/sbin/policy-rc.d

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    say "present: $(prometheus --version 2>&1 | head -n 1)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "prometheus and promtool are missing and installing them needs root (sudo $0)"

made_policy=
cleanup() { if [ -n "$made_policy" ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    # exit 101: "action forbidden by policy" (invoke-rc.d and deb-systemd-invoke honour it)
    printf '#!/bin/sh\n# made by xdpmon tools/setup-prometheus.sh while apt runs; removed after\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get install --no-install-recommends $PKG (without its system service)"
if ! apt-get install -y -qq --no-install-recommends "$PKG" >/dev/null 2>&1; then
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "$PKG" >/dev/null ||
        die "apt-get install $PKG failed (the fleet test and demo need Debian's prometheus package)"
fi

# The package enabled its service (boot links, a systemd wants link): disable it and stop it
# should it have started anyway (a policy-rc.d that was there before and allows starts).
if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
else
    systemctl disable prometheus.service >/dev/null 2>&1 || deb-systemd-helper disable prometheus.service \
        >/dev/null 2>&1 || true
    if [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true          # its own pidfile only
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi
if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    die "a system Prometheus (user prometheus) runs after the install: $(pgrep -a -u prometheus -x prometheus)"
fi

command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ||
    die "$PKG is installed but prometheus or promtool is not on PATH"
say "installed: $(prometheus --version 2>&1 | head -n 1); its system service disabled, not running"
