#!/usr/bin/env bash
# Installs what building, the lab and the tests need on a fresh Debian machine. Idempotent, non-interactive.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have ping || need_pkgs+=(iputils-ping)
have ip || need_pkgs+=(iproute2)
have bridge || need_pkgs+=(iproute2)
have tcpdump || need_pkgs+=(tcpdump)
have ethtool || need_pkgs+=(ethtool)
have tshark || need_pkgs+=(tshark)
have iperf3 || need_pkgs+=(iperf3)
have timeout || need_pkgs+=(coreutils)
have jq || need_pkgs+=(jq)
have sysctl || need_pkgs+=(procps)
# `systemd-analyze verify` checks dist/vtepd.service (tests/service.rs); groff renders the man page.
have systemd-analyze || need_pkgs+=(systemd)
have groff || need_pkgs+=(groff-base)
have pkill || need_pkgs+=(procps)
# The store tests (tests/store.rs) run their own etcd and write keys through its JSON gateway.
have etcd || need_pkgs+=(etcd-server)
have curl || need_pkgs+=(curl)
# The etcd client crate compiles etcd's protobuf definitions at build time.
have protoc || need_pkgs+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || need_pkgs+=(libprotobuf-dev)
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || need_pkgs+=(python3-scapy)
# The independent parser of the metrics scrapes (tests/metrics.rs).
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_pkgs+=(python3-prometheus-client)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages ${need_pkgs[*]} and not root; install them first" >&2
        exit 1
    fi
    echo "setup: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Debian's etcd-server enables a system etcd on 127.0.0.1:2379. vtepd's tests start their own
# inside namespaces, so it could not interfere; it is still stopped and disabled, as nothing
# here uses it.
if systemctl is-enabled etcd >/dev/null 2>&1 || systemctl is-active etcd >/dev/null 2>&1; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi

for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
