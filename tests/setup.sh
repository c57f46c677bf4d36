#!/bin/bash
# setup.sh — install what p2pbcast needs on Debian 12 (as root), then build it
# in build/ with warnings as errors. Safe to run again: installs only what is
# missing and rebuilds only what changed. The build is in the source tree, so
# ./p2pbcast is the command.
#
# Two MPIs are installed: Open MPI (the default build, mpicc/mpirun) and
# MPICH (mpicc.mpich/mpiexec.mpich: tests/run.sh builds and tests with it
# too). Debian chooses what plain mpicc/mpirun mean by alternatives; Open MPI
# has the higher priority (50 against MPICH's 40), so installing MPICH does
# not change them. Should they point elsewhere (set by hand), this script
# sets them back to Open MPI (update-alternatives --set), so that the default
# build stays Open MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

pkgs=(build-essential autoconf automake libtool pkg-config
      libopenmpi-dev openmpi-bin mpich libmpich-dev libhwloc-dev libxxhash-dev
      libibverbs-dev ibverbs-utils
      clang libclang-rt-14-dev valgrind python3
      iproute2 util-linux procps psmisc gnuplot-nox
      slurm-wlm slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages: ${missing[*]}" >&2
        echo "setup: run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# Plain mpicc, mpirun and the MPI headers/libraries: Open MPI's.
if [ "$(id -u)" -eq 0 ]; then
    ma=$(gcc -print-multiarch)
    for alt in mpi:/usr/bin/mpicc.openmpi mpirun:/usr/bin/mpirun.openmpi \
               "mpi-$ma:/usr/lib/$ma/openmpi/include"; do
        name=${alt%%:*} want=${alt#*:}
        cur=$(update-alternatives --query "$name" 2>/dev/null | sed -n 's/^Value: //p')
        if [ -n "$cur" ] && [ "$cur" != "$want" ] && [ -e "$want" ]; then
            echo "setup: alternative $name pointed to $cur; setting it to $want (Open MPI)"
            update-alternatives --quiet --set "$name" "$want"
        fi
    done
fi

# Open MPI refuses root unless told; these runs are on this machine only.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || ./autogen.sh > /dev/null 2>&1
if [ ! -f Makefile ] || [ configure -nt config.status ]; then
    ./configure -q CFLAGS="-O2 -g -Werror" > /dev/null
fi
make -s -j"$(nproc)" > /dev/null
make -s -j"$(nproc)" check TESTS= > /dev/null   # build the test programs too
echo "setup: built $top/p2pbcast"
