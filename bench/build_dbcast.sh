#!/bin/bash
# build_dbcast.sh - build mpiFileUtils' dbcast, the baseline of bench/bed_bench.sh
# -m dbcast, from source directories already on this machine.
#
#   bench/build_dbcast.sh [-p PREFIX] [-j JOBS] LIBCIRCLE LWGRP DTCMP MPIFILEUTILS
#
# Not part of CI and fetches nothing: the four arguments are source trees (git
# checkouts or "git archive" extracts, without generated configure scripts).
# Each is copied into a scratch build directory (under /var/tmp, removed at the
# end), so the source trees are never modified.  Built and measured with:
#   https://github.com/hpc/libcircle      406a0464795ef5db783971e578a798707ee79dc8 (v0.3 + 1)
#   https://github.com/LLNL/lwgrp         7d8520d79d2a817fe3a8051b323183a8dd37ed2a (v1.0.6)
#   https://github.com/LLNL/dtcmp         bbd720f6db41106380b11610ebb893f3edd47c47 (v1.1.5)
#   https://github.com/hpc/mpifileutils   2dbcf1c14fd8926b163b83391322f0c97dc60620 (tag v0.12-rtd + 11)
# e.g. git clone https://github.com/hpc/libcircle; git -C libcircle checkout 406a046 ...
#
# Installs into PREFIX (default /opt/mpifileutils: outside /tmp, which the bed's
# hosts do not share): libcircle, lwgrp, dtcmp, then mpiFileUtils with the
# minimal options (-DENABLE_XATTRS=OFF -DENABLE_LIBARCHIVE=OFF: no dtar, no
# xattr copies; dbcast uses neither), Release, against the default mpicc
# (Debian 12: Open MPI 4.1.4).  PREFIX/bin/dbcast is the result;
# PREFIX/share/build_dbcast.txt records the sources' commits (when they are
# git checkouts), the compiler and the options.
#
# Needs (Debian 12): build-essential autoconf automake libtool pkg-config
# cmake libopenmpi-dev openmpi-bin libbz2-dev (mpiFileUtils requires bzip2;
# libssl-dev is optional, for ddup).
set -euo pipefail

PREFIX=/opt/mpifileutils
JOBS=2
while (( $# )); do
    case $1 in
        -p) PREFIX=$2; shift 2 ;;
        -j) JOBS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "build_dbcast: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
die() { echo "build_dbcast: $*" >&2; exit 1; }
(( $# == 4 )) || die "usage: build_dbcast.sh [-p PREFIX] [-j JOBS] LIBCIRCLE LWGRP DTCMP MPIFILEUTILS"
NAMES=(libcircle lwgrp dtcmp mpifileutils)
ARGS=("$@")
declare -A SRC
for i in 0 1 2 3; do
    SRC[${NAMES[i]}]=$(cd "${ARGS[i]}" 2>/dev/null && pwd) || die "${NAMES[i]}: no directory ${ARGS[i]}"
done
[[ -x ${SRC[libcircle]}/autogen.sh && -f ${SRC[lwgrp]}/configure.ac && -f ${SRC[dtcmp]}/configure.ac &&
   -f ${SRC[mpifileutils]}/src/dbcast/dbcast.c ]] ||
    die "the arguments must be the source trees of libcircle, lwgrp, dtcmp and mpifileutils, in that order"
for t in mpicc mpicxx autoreconf libtoolize cmake make pkg-config; do
    command -v "$t" >/dev/null || die "$t not found (see --help for the Debian packages)"
done
case $PREFIX in /tmp|/tmp/*) die "PREFIX under /tmp: the bed's hosts have a private /tmp" ;; esac

BUILD=$(mktemp -d /var/tmp/build-dbcast.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$PREFIX"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# An autotools project from a git tree: generate configure, build, install.
autotools() {  # name configure-args...
    local name=$1
    shift
    echo "build_dbcast: $name" >&2
    cp -a "${SRC[$name]}" "$BUILD/$name"
    (
        cd "$BUILD/$name"
        ./autogen.sh >autogen.log 2>&1 || { tail -n 20 autogen.log; exit 1; }
        CC=mpicc CXX=mpicxx ./configure --prefix="$PREFIX" "$@" >configure.log 2>&1 ||
            { tail -n 20 configure.log; exit 1; }
        make -j"$JOBS" >make.log 2>&1 || { tail -n 30 make.log; exit 1; }
        make install >install.log 2>&1 || { tail -n 20 install.log; exit 1; }
    ) || die "$name failed (logs were in $BUILD/$name)"
}

autotools libcircle
autotools lwgrp
autotools dtcmp --with-lwgrp="$PREFIX"

echo "build_dbcast: mpifileutils" >&2
mkdir -p "$BUILD/mfu"
(
    cd "$BUILD/mfu"
    CC=mpicc CXX=mpicxx cmake "${SRC[mpifileutils]}" \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
        -DWITH_DTCMP_PREFIX="$PREFIX" -DWITH_LibCircle_PREFIX="$PREFIX" \
        -DENABLE_XATTRS=OFF -DENABLE_LIBARCHIVE=OFF >cmake.log 2>&1 || { tail -n 30 cmake.log; exit 1; }
    make -j"$JOBS" >make.log 2>&1 || { tail -n 30 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -n 20 install.log; exit 1; }
) || die "mpifileutils failed"
[[ -x $PREFIX/bin/dbcast ]] || die "no $PREFIX/bin/dbcast after the build"

# What was built, from what.
{
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) by bench/build_dbcast.sh into $PREFIX"
    for n in "${NAMES[@]}"; do
        c=$(git -C "${SRC[$n]}" rev-parse HEAD 2>/dev/null) || c="(not a git checkout)"
        echo "$n: ${SRC[$n]} $c"
    done
    echo "mpicc: $(mpicc --showme:version 2>&1); $(mpicc --version | head -n 1)"
    echo "mpiFileUtils: -DCMAKE_BUILD_TYPE=Release -DENABLE_XATTRS=OFF -DENABLE_LIBARCHIVE=OFF"
} >"$PREFIX/share/build_dbcast.txt"
cat "$PREFIX/share/build_dbcast.txt"
echo "build_dbcast: $PREFIX/bin/dbcast"
