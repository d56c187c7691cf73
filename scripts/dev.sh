#!/usr/bin/env bash
# Set-up and entry points for a fresh Debian machine with Python and gcc (run as root there,
# or as any user where the system packages below are already present).
#
#   scripts/dev.sh serve   set everything up, then run the daemon on embedded defaults
#   scripts/dev.sh test    set everything up, then lint, type-check and run the whole suite
#   scripts/dev.sh demo    set up, then write a demo project into ./.krill and print it
#   scripts/dev.sh setup   only set up (virtualenv in .venv, compiled hot path)
#   scripts/dev.sh bench   set up, then print the side-by-side microbenchmarks
#   scripts/dev.sh fuzz    set up (atheris too), then fuzz every decoder, $FUZZ_RUNS inputs each
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

# System packages the project needs, installed only when missing. apt-get needs root; on a
# machine where we are not root and something is missing, say what to install instead.
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "missing system packages: $* (install them with apt-get as root)" >&2
        exit 1
    fi
    if [ -z "${KRILL_APT_UPDATED:-}" ]; then
        apt-get update -qq
        export KRILL_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

system_packages() {
    local want=()
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || want+=(python3-venv)
    local include
    include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$include/Python.h" ] || want+=(python3-dev)
    command -v gcc >/dev/null || want+=(gcc)
    # The MQTT tests start their own broker from Debian's mosquitto binary.
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || want+=(mosquitto)
    # The interop tests run stock Yjs clients (npm yjs, y-websocket) under Node.js.
    command -v node >/dev/null || want+=(nodejs)
    command -v npm >/dev/null || want+=(npm)
    # The dashboard test drives Debian's Chromium, headless (never a downloaded browser).
    [ -x /usr/bin/chromium ] || want+=(chromium)
    if [ ${#want[@]} -gt 0 ]; then
        apt_install "${want[@]}"
    fi
}

setup() {
    system_packages
    local stamp="$VENV/.krill-installed"
    local newest
    newest=$(ls -t pyproject.toml setup.py krill_crdt/_core/*.pyx 2>/dev/null | head -n 1)
    if [ -f "$stamp" ] && [ "$stamp" -nt "$newest" ] && [ -x "$PY" ]; then
        return
    fi
    [ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    # The compiled hot path is required here: a build failure must fail the set-up, not fall
    # back silently to the pure-Python twins.
    KRILL_REQUIRE_EXTENSIONS=1 "$PY" -m pip install --quiet -e '.[dev,all]'
    touch "$stamp"
}

lint() {
    "$VENV/bin/ruff" check krill_crdt tests bench fuzz
    "$VENV/bin/ruff" format --check krill_crdt tests bench fuzz
    "$VENV/bin/mypy"
}

run_tests() {
    lint
    # Compiled hot path, the whole suite (hot-path tests also run against the twins).
    KRILL_REQUIRE_EXTENSIONS=1 "$PY" -m pytest -q -p no:cacheprovider "$@"
    # The layers that run on the hot path (store, sync engine, running peers) again on the
    # pure-Python twins; the hot-path tests themselves already cover both.
    KRILL_NO_EXTENSIONS=1 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
        tests/store tests/sync tests/runtime "$@"
}

cmd=${1:-test}
shift || true
case "$cmd" in
    setup) setup ;;
    serve) setup; exec "$VENV/bin/krill" serve "$@" ;;
    demo) setup; exec "$VENV/bin/krill" demo "$@" ;;
    test) setup; run_tests "$@" ;;
    lint) setup; lint ;;
    bench) setup; exec "$VENV/bin/krill" bench "$@" ;;
    fuzz)
        setup
        "$PY" -c 'import atheris' 2>/dev/null || "$PY" -m pip install --quiet atheris
        exec "$PY" -m fuzz.run all --runs "${FUZZ_RUNS:-100000}" "$@"
        ;;
    *) echo "usage: scripts/dev.sh setup|serve|demo|test|lint|bench|fuzz" >&2; exit 2 ;;
esac
