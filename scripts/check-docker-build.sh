#!/usr/bin/env bash
# Builds the Dockerfile and serves the image, without a Docker daemon: buildah
# builds it (its own storage under $WORK), podman runs it. Then it checks what
# a user sees: the server runs as the non-root user, the image's HEALTHCHECK
# passes, and /healthz, /v1/models, one speech and one transcription request
# answer; last, SIGTERM stops it cleanly. Run as root on Debian bookworm
# (installs buildah, podman, runc and debootstrap when missing).
#
#   bash scripts/check-docker-build.sh
#
# Environment:
#   BASE_IMAGE  the image FROM uses. Unset: a local stand-in for
#               python:3.11-slim-bookworm (Docker Hub is unreachable here),
#               made once by make_base below.
#   WORK        storage for images and the base's root file system
#               (default /var/tmp/sparsewave-docker; needs about 12 GB).
#   PORT        host port on 127.0.0.1 for the container's 8000 (default 18000).
#   CLEAN=1     delete $WORK at the end (the next run builds from scratch).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/var/tmp/sparsewave-docker}
PORT=${PORT:-18000}
IMAGE=localhost/sparsewave:check
NAME=sparsewave-check
STANDIN=localhost/python:3.11-slim-bookworm-standin
STORE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver overlay)
buildah() { command buildah "${STORE[@]}" "$@"; }
# runc, not crun: crun refuses this sandbox's hybrid cgroups (v1 with an
# empty v2 tree mounted), "cgroups in hybrid mode not supported".
podman() { command podman "${STORE[@]}" --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"; }
say() { echo "== $*"; }

[ "$(id -u)" -eq 0 ] || { echo "check-docker-build: run as root (buildah's overlay storage)" >&2; exit 2; }
need=()
for p in buildah podman debootstrap runc; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
mkdir -p "$WORK"

# The stand-in: debootstrap's bookworm with Debian's python3.11 made into a
# venv at /usr/local, so that `python` and `pip` are on PATH and install
# into /usr/local as in the official image, and the official image's apt
# sources (deb822, main only) so install-system.sh meets the same file.
# It also trusts this host's local CAs (/usr/local/share/ca-certificates),
# with PIP_CERT pointing pip at them: where TLS to PyPI is intercepted, as
# in the sandbox this was written in, pip fails without them.
make_base() {
  local root="$WORK/base-rootfs"
  rm -rf "$root"
  debootstrap --variant=minbase --include=ca-certificates,netbase,tzdata,python3,python3-venv \
    bookworm "$root" http://deb.debian.org/debian
  chroot "$root" python3 -m venv /usr/local
  chroot "$root" /usr/local/bin/python -m pip --version
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates
  fi
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$STANDIN"
  rm -rf "$root"
}

# One request to each endpoint a user starts with, with curl; answers are
# read with python3's json and wave modules (host side, stdlib only). Each
# answer is assigned before it is printed, so that a failure stops the script.
js() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
check_requests() {
  local u=$1 tmp out models tts asr piano
  tmp=$(mktemp -d)
  out=$(curl -fsS "$u/healthz"); say "GET /healthz: $out"
  out=$(curl -fsS "$u/readyz" | js 'd["failed"]'); say "GET /readyz: failed bundles $out"
  models=$(curl -fsS "$u/v1/models")
  out=$(js '", ".join(m["id"] + ":" + m["kind"] for m in d["data"])' <<<"$models"); say "GET /v1/models: $out"
  # the model of each kind that the benchmarks use, else the first of that kind
  tts=$(js '([m["id"] for m in d["data"] if m["kind"] == "tts" and m["id"] == "gan-tts-default"]
            + [m["id"] for m in d["data"] if m["kind"] == "tts"] + [""])[0]' <<<"$models")
  asr=$(js '([m["id"] for m in d["data"] if m["kind"] == "asr" and m["id"] == "deepspeech2-default"]
            + [m["id"] for m in d["data"] if m["kind"] == "asr"] + [""])[0]' <<<"$models")
  piano=$(js '([m["id"] for m in d["data"] if m["kind"] == "piano"] + [""])[0]' <<<"$models")
  [ -n "$tts" ] && [ -n "$asr" ] || { echo "check-docker-build: no tts or asr model loaded" >&2; return 1; }
  curl -fsS -o "$tmp/speech.wav" -H 'content-type: application/json' \
    -d "{\"model\": \"$tts\", \"input\": \"The quick brown fox jumps over the lazy dog.\", \"response_format\": \"wav\"}" \
    "$u/v1/audio/speech"
  out=$(python3 -c 'import sys, wave
w = wave.open(sys.argv[1])  # streamed: the header claims the longest length, so count the frames
n = len(w.readframes(w.getnframes())) // (w.getsampwidth() * w.getnchannels())
assert n > 0, "no audio"
print(f"wav, {n / w.getframerate():.2f} s at {w.getframerate()} Hz")' "$tmp/speech.wav")
  say "POST /v1/audio/speech ($tts): $out"
  out=$(curl -fsS -F "file=@$tmp/speech.wav" -F "model=$asr" -F response_format=verbose_json \
    -F 'timestamp_granularities[]=word' "$u/v1/audio/transcriptions" | js 'repr(d["text"]), len(d["words"]), "words timed"')
  say "POST /v1/audio/transcriptions ($asr) of that audio: $out"
  if [ -n "$piano" ]; then
    out=$(curl -fsS -F "file=@$tmp/speech.wav" -F "model=$piano" "$u/v1/music/transcriptions" | js 'len(d["notes"])')
    say "POST /v1/music/transcriptions ($piano) of that audio: $out notes"
  fi
  out=$(curl -fsS "$u/"); grep -qi '<html' <<<"$out"; say "GET /: the web page"
  rm -rf "$tmp"
}

if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=$STANDIN
  podman image exists "$BASE_IMAGE" || { say "making the base image stand-in"; make_base; }
fi

say "building $IMAGE FROM $BASE_IMAGE"
t0=$(date +%s)
# docker format keeps HEALTHCHECK (the OCI image format has no such field)
buildah bud --layers --format docker --isolation chroot \
  --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile .
say "build took $(( $(date +%s) - t0 )) s; image $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec)"
podman image inspect --format 'user={{.Config.User}} cmd={{.Config.Cmd}} healthcheck={{.Config.Healthcheck.Test}}' "$IMAGE"

podman rm -f "$NAME" >/dev/null 2>&1 || true
trap 'podman rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
say "serving on 127.0.0.1:$PORT"
# --ulimit: podman raises the open-file limit to 1048576 by default, which
# needs CAP_SYS_RESOURCE ("error setting rlimit type 7: operation not
# permitted" where it is missing); keep the host's. --health-interval disable:
# podman times healthchecks with systemd timers, and no systemd runs here;
# `podman healthcheck run` below runs the image's HEALTHCHECK by hand.
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:8000" --health-interval disable \
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 "$IMAGE" >/dev/null
t0=$(date +%s)
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || { podman logs "$NAME"; exit 1; }
  sleep 1
done
say "/healthz answered $(( $(date +%s) - t0 )) s after start"
podman healthcheck run "$NAME"  # exits non-zero (and stops the script) when unhealthy
say "HEALTHCHECK passed"
uid=$(podman exec "$NAME" awk '/^Uid:/ {print $2}' /proc/1/status)
say "the server (pid 1) runs as uid $uid ($(podman exec "$NAME" id -un))"
[ "$uid" != 0 ] || { echo "check-docker-build: the server runs as root" >&2; exit 1; }

check_requests "http://127.0.0.1:$PORT"

say "SIGTERM: podman stop"
podman stop -t 40 "$NAME" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
podman logs "$NAME" > "$WORK/container.log" 2>&1
say "the server's log ($WORK/container.log): $(grep -c -E 'WARNING|ERROR|Traceback' "$WORK/container.log" || true) warning/error lines"
grep -E 'WARNING|ERROR|Traceback' "$WORK/container.log" | head -n 20 || true
tail -n 5 "$WORK/container.log"
say "exit code after SIGTERM: $code"
[ "$code" = 0 ]
[ "${CLEAN:-0}" = 1 ] && { podman rm -f "$NAME" >/dev/null 2>&1 || true; trap - EXIT; rm -rf "$WORK"; say "removed $WORK"; }
say "docker build check passed"
