#!/usr/bin/env bash
# Installs what tapegrad needs from Debian's packages; does nothing when everything is present.
# Usage: scripts/setup.sh [--with-data] [--with-torch] [--with-fuzz]
#   --with-data   also the real data sets: Fashion-MNIST and the word lists
#   --with-torch  also Debian's PyTorch, to regenerate fixtures and run the side-by-side benchmarks
set -euo pipefail

packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libfmt-dev catch2 libstb-dev
          nlohmann-json3-dev libcli11-dev zlib1g-dev libopenmpi-dev openmpi-bin)
for arg in "$@"; do
  case "$arg" in
    --with-data) packages+=(dataset-fashion-mnist wamerican wngerman wfrench witalian wspanish wportuguese wdutch
                            wdanish wswedish wpolish) ;;
    --with-torch) packages+=(python3-torch python3-numpy) ;;
    --with-fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "setup.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup.sh: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
