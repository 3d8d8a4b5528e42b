#!/usr/bin/env bash
# Debian packages the test suite needs (servers it starts on 127.0.0.1, a C compiler for the
# compiled modules); installed only when missing.
set -euo pipefail
need=()
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
# A C compiler and the interpreter's headers for the mypyc build of the per-request modules and
# the C helpers (scripts/build_native.py); without them Forecourt runs as pure Python.
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
python=${PYTHON:-python3}
if ! "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    case "$(command -v "$python")" in
        /usr/bin/*) need+=(python3-dev) ;;  # Debian's own interpreter: its headers are a package
        *) echo "install-system-deps: $python has no Python.h; the compiled build will fall back to pure Python" >&2 ;;
    esac
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-system-deps: missing ${need[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "install-system-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
