# Shared helpers for the project's scripts: sourced, not run.
# Installs what a fresh Debian machine lacks (as root or with sudo), or prints the exact
# command and stops.

sqlguard_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# as_root CMD…: run CMD as root (directly or via sudo); fail with the command to run otherwise.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
  else
    echo "error: this needs root to run: sudo $*" >&2
    return 1
  fi
}

# need_debian_packages PKG…: install the Debian packages that are not installed yet.
need_debian_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install these packages yourself: ${missing[*]}" >&2
    return 1
  fi
  as_root apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" || {
    echo "error: could not install: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  }
}

# pg_bindir: the directory holding initdb/postgres (newest installed major version).
pg_bindir() {
  if [ -n "${SQLGUARD_PG_BINDIR:-}" ]; then echo "$SQLGUARD_PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

need_build_tools() {
  need_debian_packages libclang-dev || return 1
  command -v cargo >/dev/null 2>&1 || {
    echo "error: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    return 1
  }
}

need_postgres() {
  if [ -z "$(pg_bindir)" ]; then need_debian_packages postgresql || return 1; fi
  [ -x "$(pg_bindir)/initdb" ] || { echo "error: no initdb under $(pg_bindir)" >&2; return 1; }
}

# The official MCP Python SDK in .venv, for the end-to-end tests, with the RSA signing the HTTP
# tests use to sign tokens as Teleport does.
MCP_SDK_VERSION=2.3.0
CRYPTOGRAPHY_VERSION=51.0.1
need_mcp_python_sdk() {
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import mcp, jwt, cryptography" 2>/dev/null; then return 0; fi
  command -v python3 >/dev/null 2>&1 || need_debian_packages python3 || return 1
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    need_debian_packages python3-venv || return 1
    python3 -m venv .venv || return 1
  fi
  echo "Installing the MCP Python SDK (mcp==$MCP_SDK_VERSION) and cryptography into .venv" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check "mcp==$MCP_SDK_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
}
