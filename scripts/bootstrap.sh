#!/usr/bin/env bash
# Everything `make run` and `make test` need, on a fresh Debian machine as root:
# system libraries (GDAL/GEOS/PROJ, PostGIS), the Python environment from uv.lock,
# a .env with fresh local secrets, the database with PostGIS, and migrations.
# Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "missing system packages ($*) and no apt-get: install them by hand."
  [ "$(id -u)" = 0 ] || die "missing system packages: run as root, or: sudo apt-get install $*"
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }

system_packages() {
  local wanted=()
  has_lib 'libgdal\.so' || wanted+=(gdal-bin)
  has_lib 'libgeos_c\.so' || wanted+=(libgeos-c1v5)
  has_lib 'libproj\.so' || wanted+=(proj-bin)
  command -v psql >/dev/null || wanted+=(postgresql-client)
  command -v shellcheck >/dev/null || wanted+=(shellcheck)  # `make test` lints the shell scripts
  # The ops console's browser test drives Debian's Chromium (Playwright never downloads one here).
  command -v chromium >/dev/null || wanted+=(chromium)
  command -v chromedriver >/dev/null || wanted+=(chromium-driver)
  # The monitoring tests check deploy/monitoring/ with promtool and run a real Prometheus.
  command -v promtool >/dev/null || wanted+=(prometheus)
  # PostGIS for the PostgreSQL server installed here, if one is (a remote one brings its own).
  local major
  major=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
  if [ -n "$major" ] && [ -x "/usr/lib/postgresql/$major/bin/postgres" ] \
    && ! dpkg -s "postgresql-$major-postgis-3" >/dev/null 2>&1; then
    wanted+=("postgresql-$major-postgis-3")
  fi
  find_python >/dev/null || wanted+=(python3 python3-venv)
  if [ ${#wanted[@]} -gt 0 ]; then apt_install "${wanted[@]}"; fi
  quiet_system_prometheus
}

# Debian's prometheus package enables a system Prometheus on port 9090 that scrapes the machine;
# the tests start their own on free ports, so the system one is stopped and kept off.
quiet_system_prometheus() {
  local unit
  for unit in prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ] \
      && systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      say "disabling the system $unit service"
      systemctl disable --now --quiet "$unit"
    elif [ -x "/etc/init.d/$unit" ]; then
      invoke-rc.d "$unit" stop >/dev/null 2>&1 || true
      update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  done
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys, venv; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

python_env() {
  local python
  python=$(find_python) || die "Python 3.11, 3.12 or 3.13 with venv is required."
  if [ -f .venv/.synced ] && [ .venv/.synced -nt uv.lock ] && [ .venv/.synced -nt pyproject.toml ]; then
    return 0
  fi
  if [ ! -x .tools/uv/bin/uv ]; then
    say "installing uv $UV_VERSION into .tools/uv"
    if ! "$python" -m venv .tools/uv >/dev/null 2>&1; then
      apt_install python3-venv
      "$python" -m venv .tools/uv
    fi
    .tools/uv/bin/pip install -q "uv==$UV_VERSION"
  fi
  say "syncing .venv from uv.lock"
  if ! UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=.venv .tools/uv/bin/uv sync --frozen --python "$python" --quiet; then
    say "uv failed; falling back to pip with requirements.lock"
    "$python" -m venv .venv
    .venv/bin/pip install -q --require-hashes -r requirements.lock
  fi
  touch .venv/.synced
}

env_file() {
  [ -f .env ] && return 0
  say "writing .env from .env.example with fresh local secrets"
  local secret password
  secret=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
  password=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')
  sed -e "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$secret|" \
      -e "s|^DEMO_STAFF_PASSWORD=.*|DEMO_STAFF_PASSWORD=$password|" .env.example > .env
  chmod 600 .env
}

local_dirs() {
  mkdir -p staticfiles media .local
}

database() {
  .venv/bin/python manage.py ensure_database
  say "migrating"
  .venv/bin/python manage.py migrate --noinput -v 0
}

system_packages
python_env
env_file
local_dirs
database
