#!/usr/bin/env bash
# Installs the Debian packages sparsewave needs (speech and piano corpus tools,
# audio libraries, a compiler toolchain for the CPU kernels). Idempotent: it
# only calls apt-get when a package is missing.
set -euo pipefail
PKGS=(
  espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-rablpc16k festvox-don festvox-us-slt-hts libttspico-utils
  fortunes fortunes-min wordnet-base
  fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small csound-soundfont
  timidity freepats
  sox libsndfile1 ninja-build g++ make
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# MBROLA voices and pico2wave live in contrib and non-free.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  $SUDO sed -i -E 's/^Components: main$/Components: main contrib non-free non-free-firmware/' \
    /etc/apt/sources.list.d/debian.sources
fi
if [ -f /etc/apt/sources.list ]; then
  $SUDO sed -i -E '/^deb .*debian/ s/ main$/ main contrib non-free non-free-firmware/' /etc/apt/sources.list
fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
