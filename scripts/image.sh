#!/usr/bin/env bash
# `make image`: builds the project's image from its Dockerfile with Podman and prints its size.
#
# On a fresh Debian machine, as root: installs podman, runc and debootstrap if missing, and
# uses the project's own Podman settings (deploy/podman/containers.conf, via CONTAINERS_CONF).
# The Dockerfile's base is the official python:3.13-slim-trixie image. Where that image is not
# on the machine and no container registry can be reached, a stand-in is made once from
# Debian 13's own packages (debootstrap) and used instead, and this script says so.
#
#   IMAGE=localhost/delivery:latest    the tag to build
#   PYTHON_IMAGE=...                   build on this base instead (must exist locally)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/delivery:latest}"
OFFICIAL_BASE="docker.io/library/python:3.13-slim-trixie"
STANDIN_DEBIAN="localhost/delivery-standin/debian:trixie"
STANDIN_BASE="localhost/delivery-standin/python:3.13-slim-trixie"
export CONTAINERS_CONF="$PWD/deploy/podman/containers.conf"

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31mimage:\033[0m %s\n' "$*" >&2; exit 1; }

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing; as root: apt-get install podman runc debootstrap"
  step "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
[ "$(id -u)" -eq 0 ] || die "the image is built with rootful Podman: run as root"

debian_mirror() {
  # The machine's own Debian mirror (deb822 or one-line sources), else the default one.
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n 1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_standin_base() {
  if ! podman image exists "$STANDIN_DEBIAN"; then
    local root
    root=$(mktemp -d /var/tmp/delivery-debootstrap.XXXXXX)
    step "debootstrap: Debian 13 (trixie) with Python 3.13, from $(debian_mirror) (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      trixie "$root" "$(debian_mirror)" >/dev/null ||
      { rm -rf "$root"; die "debootstrap failed (is $(debian_mirror) reachable?)"; }
    tar -C "$root" -c . | podman import --quiet - "$STANDIN_DEBIAN" >/dev/null
    rm -rf "$root"
  fi
  local context
  context=$(mktemp -d)
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca-certificates.crt"
  podman build --quiet --format docker --build-arg "DEBIAN_IMAGE=$STANDIN_DEBIAN" \
    -f deploy/podman/python-standin.Containerfile -t "$STANDIN_BASE" "$context" >/dev/null
  rm -rf "$context"
}

if [ -n "${PYTHON_IMAGE:-}" ]; then
  podman image exists "$PYTHON_IMAGE" || die "PYTHON_IMAGE=$PYTHON_IMAGE is not on this machine"
  base="$PYTHON_IMAGE"
elif podman image exists "$OFFICIAL_BASE"; then
  base="$OFFICIAL_BASE"
else
  step "base: $OFFICIAL_BASE is not on this machine and no container registry is reachable here;"
  step "      building on a STAND-IN, $STANDIN_BASE, made from Debian 13's python3 packages"
  make_standin_base
  base="$STANDIN_BASE"
fi

step "building $IMAGE from the Dockerfile on $base"
podman build --format docker --build-arg "PYTHON_IMAGE=$base" -t "$IMAGE" . ||
  die "podman build failed (its output is above)"

size() { podman image inspect --format '{{.Size}}' "$1"; }
image_bytes=$(size "$IMAGE")
base_bytes=$(size "$base")
printf '\n  image  %s\n  size   %d MB, of which the base %d MB and the project'"'"'s layers %d MB\n' \
  "$IMAGE" $((image_bytes / 1000000)) $((base_bytes / 1000000)) \
  $(((image_bytes - base_bytes) / 1000000))
if [ "$base" = "$STANDIN_BASE" ]; then
  printf '  base   stand-in for %s (Debian 13 packages), not the official image\n' "$OFFICIAL_BASE"
fi
