#!/usr/bin/env bash
# `make setup` and `make test` on a fresh Debian, in a chroot built from Debian's mirror with mmdebstrap:
# Debian 13 (trixie: QGIS 3.40 LTR, Python 3.13) unless RELEASE=bookworm (Debian 12: QGIS 3.22, Python 3.11).
# Run as root on any Debian; not part of CI (the first run downloads QGIS and the CUDA build of torch,
# several GB, and leaves a 9 GB chroot).
#   scripts/test-debian.sh                                  # the whole suite on Debian 13
#   PYTEST_ARGS="tests/algorithms" scripts/test-debian.sh   # a part of it
#   GOAL=demo scripts/test-debian.sh                        # another make target after `make setup`
#   RELEASE=bookworm scripts/test-debian.sh                 # on Debian 12
#   CHROOT         where the chroot lives, reused by the next run (default /var/tmp/scl-deeplab-$RELEASE)
#   DEBIAN_MIRROR  the package mirror (default http://deb.debian.org/debian)
#   NICE           niceness of the test run (default 10), so a shared machine stays usable
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASE="${RELEASE:-trixie}"
CHROOT="${CHROOT:-/var/tmp/scl-deeplab-$RELEASE}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SRC=/root/scl_deeplab  # the copy of this repository inside the chroot; its .venv stays between runs

if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0") needs root (mmdebstrap, mount, chroot): run it with sudo." >&2
    exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
fi

# A bare Debian with what `make setup` needs to start; QGIS itself comes from `make setup` inside.
# Built beside its final place and renamed, so an interrupted download is never mistaken for a chroot.
if findmnt -rno TARGET | grep -q "^$CHROOT"; then
    echo "Something is still mounted under $CHROOT (an interrupted run?): unmount it first." >&2
    exit 1
fi
if [ ! -x "$CHROOT/usr/bin/make" ]; then
    rm -rf "$CHROOT.partial"
    mmdebstrap --variant=apt --include=make,git,ca-certificates,python3 "$RELEASE" "$CHROOT.partial" \
        "deb $MIRROR $RELEASE main" "deb $MIRROR $RELEASE-updates main" "deb $SECURITY $RELEASE-security main"
    mv "$CHROOT.partial" "$CHROOT"
fi

MOUNTED=()
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true
    done
}
trap unmount_all EXIT
trap 'exit 130' INT TERM  # through the EXIT trap: never leave the host's /dev mounted in the chroot
mount_into() {  # mount_into <path inside> <mount arguments...>
    local target="$CHROOT$1"
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTED+=("$target")
}
mount_into /proc -t proc proc
mount_into /sys --bind /sys
mount_into /dev --bind /dev
mount_into /dev/pts --bind /dev/pts
mount_into /dev/shm --bind /dev/shm

# The host's name resolution (torchrun hangs resolving the host name otherwise) and pip's configuration,
# with the certificate authorities it trusts.
cp -L /etc/hosts "$CHROOT/etc/hosts"
rm -f "$CHROOT/etc/resolv.conf" && cp -L /etc/resolv.conf "$CHROOT/etc/resolv.conf"
for conf in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip"; do
    if [ -e "$conf" ]; then
        mkdir -p "$CHROOT$(dirname "$conf")" && cp -rL "$conf" "$CHROOT$(dirname "$conf")/"
    fi
done
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    mkdir -p "$CHROOT/usr/local/share/ca-certificates"
    cp -rL /usr/local/share/ca-certificates/. "$CHROOT/usr/local/share/ca-certificates/"
    chroot "$CHROOT" update-ca-certificates >/dev/null
fi

# The repository as committed (make package archives HEAD), then the working tree's changes on top.
if [ ! -d "$CHROOT$SRC/.git" ]; then
    git clone -q "$ROOT" "$CHROOT$SRC"
fi
git -C "$CHROOT$SRC" fetch -q "$ROOT" HEAD
git -C "$CHROOT$SRC" reset -q --hard FETCH_HEAD
git -C "$CHROOT$SRC" clean -qfd
git -C "$ROOT" ls-files -z -co --exclude-standard \
    | tar -C "$ROOT" --null --ignore-failed-read -T - -cf - | tar -C "$CHROOT$SRC" -xf -

ENVIRONMENT=(HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
             "PYTEST_ARGS=${PYTEST_ARGS:-}" "NICE=${NICE:-10}" "GOAL=${GOAL:-test}")
while IFS= read -r variable; do ENVIRONMENT+=("$variable"); done < <(env | grep -E '^(PIP_|OMP_NUM_THREADS=)' || true)

chroot "$CHROOT" /usr/bin/env -i "${ENVIRONMENT[@]}" /bin/bash -c '
    set -euo pipefail
    cd '"$SRC"'
    echo "== $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version)"
    start=$(date +%s)
    make setup
    echo "== make setup: $(( $(date +%s) - start )) s; QGIS $(python3 -c "from qgis.core import Qgis; print(Qgis.version())")"
    start=$(date +%s)
    status=0
    nice -n "$NICE" make "$GOAL" PYTEST_ARGS="$PYTEST_ARGS" || status=$?
    echo "== make $GOAL: $(( $(date +%s) - start )) s, exit status $status"
    exit $status
'
