#!/usr/bin/env bash
# Installs pymesos (the Python Mesos framework library Berth must stay
# compatible with) into a virtualenv: target/py by default, or the directory
# given as $1. Prints the venv's python on the last line of stdout.
#
# pymesos depends on http-parser 0.9.0, whose sdist ships a parser.c made by
# Cython 0.29.16; that C code does not compile against Python 3.11's headers
# and no 3.11 wheel exists. So the sdist is downloaded, parser.c regenerated
# with cython<3 (Cython 3 rejects the .pyx), and the package installed from
# that tree. Everything else comes from PyPI as usual.
#
# Idempotent: when the venv already imports pymesos and http_parser's C
# parser it only says so. As root on Debian it installs python3-venv,
# python3-dev and build-essential when (and only when) something is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYMESOS_VERSION=0.3.15
HTTP_PARSER_VERSION=0.9.0
venv=${1:-target/py}
log() { echo "setup-pymesos: $*" >&2; }

# Python 3.11: $PYTHON, else python3.11, else python3 if it is 3.11.
pick_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c 'import pymesos, addict, http_parser.parser' 2>/dev/null; then
    log "pymesos already installed in $venv ($("$venv/bin/python" -c \
        'import importlib.metadata as m; print("pymesos", m.version("pymesos"), "http-parser", m.version("http-parser"))'))"
    echo "$venv/bin/python"
    exit 0
fi

# What building a C extension in a venv needs: the venv module (with
# ensurepip), Python.h and a C compiler.
python=$(pick_python || true)
missing=()
if [ -z "$python" ]; then
    missing+=(python3 python3-venv python3-dev)
else
    "$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    inc=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] || missing+=(python3-dev)
fi
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing: ${missing[*]} (install them as root, or set PYTHON to a Python 3.11 with headers)"
        exit 1
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    python=$(pick_python) || { log "no Python 3.11 after installing ${missing[*]}"; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating venv $venv with $python"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)

log "installing build tools (cython<3, setuptools, wheel)"
"${pip[@]}" install 'cython<3' setuptools wheel

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "downloading the http-parser $HTTP_PARSER_VERSION sdist"
"${pip[@]}" download --no-deps --no-binary :all: "http-parser==$HTTP_PARSER_VERSION" -d "$work"
tar -xzf "$work/http-parser-$HTTP_PARSER_VERSION.tar.gz" -C "$work"
src="$work/http-parser-$HTTP_PARSER_VERSION"
# The sdist carries a stray macOS build of the extension; drop it so that
# only the freshly compiled module can be installed.
rm -f "$src"/http_parser/*.so
log "regenerating http_parser/parser.c with $("$venv/bin/cython" --version 2>&1)"
# language_level 2 is what the .pyx was written for. Cython's warnings about
# nogil casts in it are known and harmless; they are shown only on failure.
if ! "$venv/bin/cython" -2 "$src/http_parser/parser.pyx" -o "$src/http_parser/parser.c" \
    2>"$work/cython.log"; then
    cat "$work/cython.log" >&2
    exit 1
fi
log "building and installing http-parser $HTTP_PARSER_VERSION"
# No build isolation: the build must use this venv's setuptools (setup.py
# imports distutils and imp, both still there on 3.11) and nothing newer.
"${pip[@]}" install --no-build-isolation "$src"

log "installing pymesos $PYMESOS_VERSION"
"${pip[@]}" install "pymesos==$PYMESOS_VERSION"

"$venv/bin/python" -c 'import pymesos, addict, http_parser.parser'
log "done: $("$venv/bin/python" -c \
    'import importlib.metadata as m; print("pymesos", m.version("pymesos"), "http-parser", m.version("http-parser"))') in $venv"
echo "$venv/bin/python"
