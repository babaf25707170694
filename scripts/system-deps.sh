#!/usr/bin/env sh
# System packages the voice features and their tests need (Debian/Ubuntu). Idempotent: installs
# only what is missing, only where apt-get exists; prints what it does. Run as root or with sudo.
#   scripts/system-deps.sh          espeak-ng (lite voice), festival + the SLT voice (tests),
#                                   FluidSynth + the FluidR3 General MIDI SoundFont (lite music),
#                                   Chromium (the studio's browser tests, driven by Playwright)
#   scripts/system-deps.sh --bench  also the reference voices of bench/voice_similarity.py
set -eu

PKGS="espeak-ng festival festvox-us-slt-hts libfluidsynth3 fluid-soundfont-gm chromium"
if [ "${1:-}" = "--bench" ]; then
    PKGS="$PKGS flite festvox-kallpc16k festvox-kdlpc16k festvox-ca-ona-hts festival-ca festvox-italp16k \
festvox-czech-dita festival-czech festvox-suopuhe-lj"
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-deps: no apt-get here; install these yourself if you need them: $PKGS"
    exit 0
fi

missing=""
for p in $PKGS; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        echo "system-deps: $p already installed"
    else
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "system-deps: nothing to install"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "system-deps: not root and no sudo; please install:$missing"
        exit 1
    fi
fi
echo "system-deps: installing$missing"
$SUDO apt-get update -qq || echo "system-deps: apt-get update failed; trying the install anyway"
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
echo "system-deps: done"
