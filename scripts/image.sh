#!/usr/bin/env bash
# `make image`: builds the project's image from its Dockerfile with Podman and prints its size.
#
# On a fresh Debian machine, as root: installs podman, runc and debootstrap if missing, and
# uses the project's own Podman settings (deploy/podman/containers.conf, via CONTAINERS_CONF).
# The Dockerfile's base is the official python:3.13-slim-trixie image. Where that image is not
# on the machine (no container registry is reachable from the project's machines), a stand-in
# is made once from Debian 13's own packages (debootstrap) and tagged under its name, labelled
# delivery.standin=1, and this script says so. Stand-ins are never pulled over or replaced by
# it: `podman rmi` them to use the real images once a registry is reachable.
#
#   IMAGE=localhost/delivery:latest    the tag to build
#   PYTHON_IMAGE=...                   build on this base instead (must exist locally)
#
# `scripts/image.sh standins` makes docker-compose.yml's other images the same way where they
# are absent: PostGIS and Redis from Debian 13's packages, tagged under the names the file uses;
# and the load-balancer test's HAProxy (localhost/delivery-test/haproxy), from Debian's package.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/delivery:latest}"
BASE="docker.io/library/python:3.13-slim-trixie"
STANDIN_DEBIAN="localhost/delivery-standin/debian:trixie"
HAPROXY_IMAGE="localhost/delivery-test/haproxy:trixie"
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
    --label delivery.standin=1 -f deploy/podman/python-standin.Containerfile -t "$BASE" \
    "$context" >/dev/null || die "building the stand-in for $BASE failed"
  rm -rf "$context"
}

is_standin() {
  [ -n "$(podman image inspect --format '{{index .Labels "delivery.standin"}}' "$1" 2>/dev/null)" ]
}

make_compose_standins() {
  local name file
  for pair in "docker.io/postgis/postgis:16-3.5=postgis-standin" "docker.io/library/redis:7-alpine=redis-standin"; do
    name="${pair%%=*}" file="${pair#*=}"
    if podman image exists "$name" && ! is_standin "$name"; then
      step "$name is on this machine: used as it is"
      continue
    fi
    step "$name: a STAND-IN made from Debian 13's packages (deploy/podman/$file.Containerfile)"
    podman build --quiet --format docker --build-arg "DEBIAN_IMAGE=$STANDIN_DEBIAN" \
      --label delivery.standin=1 -f "deploy/podman/$file.Containerfile" -t "$name" \
      deploy/podman >/dev/null || die "building the stand-in for $name failed"
  done
  # Not a stand-in: the load-balancer test's HAProxy, from Debian's package.
  step "$HAPROXY_IMAGE: HAProxy from Debian 13's package (deploy/podman/haproxy.Containerfile)"
  podman build --quiet --format docker --build-arg "DEBIAN_IMAGE=$STANDIN_DEBIAN" \
    -f deploy/podman/haproxy.Containerfile -t "$HAPROXY_IMAGE" deploy/podman >/dev/null ||
    die "building $HAPROXY_IMAGE failed"
}

if [ -n "${PYTHON_IMAGE:-}" ]; then
  podman image exists "$PYTHON_IMAGE" || die "PYTHON_IMAGE=$PYTHON_IMAGE is not on this machine"
  base="$PYTHON_IMAGE"
else
  base="$BASE"
  if ! podman image exists "$BASE" || is_standin "$BASE"; then
    step "base: the official $BASE is not on this machine (no registry is reachable here):"
    step "      building on a STAND-IN under its name, made from Debian 13's python3 packages"
    make_standin_base
  fi
fi
if [ "${1:-}" = standins ]; then
  make_compose_standins
  exit 0
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
if is_standin "$base"; then
  printf '  base   a stand-in for %s (Debian 13 packages), not the official image\n' "$base"
fi
