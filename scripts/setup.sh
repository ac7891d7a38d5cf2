#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian 12 machine: QGIS 3.22 from apt, .venv with
# Python 3.11, the project in editable mode under a constraints file, PyQGIS exposed to the
# venv through curated symlinks, then a self-check. A second run is a quick no-op.
#
#   CONSTRAINTS=constraints-cuda.txt scripts/setup.sh   # GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
CONSTRAINTS=${CONSTRAINTS:-constraints-cpu.txt}
STAMP=$VENV/.setup-stamp
want=$(cat pyproject.toml "$CONSTRAINTS" scripts/setup.sh | sha256sum | cut -c1-16)

if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
    exit 0
fi

# 1. QGIS 3.22 LTR (Debian 12 packages) when missing.
if ! dpkg -s python3-qgis qgis-providers qgis >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    echo ">> installing QGIS from apt (python3-qgis qgis-providers qgis)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        python3-qgis qgis-providers qgis
fi

# 2. The venv, with Python 3.11 (same ABI as Debian 12's PyQGIS).
PY=${PYTHON:-}
if [[ -z $PY ]]; then
    for cand in python3.11 /usr/bin/python3.11; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
            PY=$cand; break
        fi
    done
fi
[[ -n $PY ]] || { echo "setup: Python 3.11 not found (apt-get install python3.11-venv)" >&2; exit 1; }
if [[ ! -x $VENV/bin/python ]]; then
    echo ">> creating $VENV with $PY"
    "$PY" -m venv "$VENV" || { echo "setup: venv failed; on Debian: apt-get install python3.11-venv" >&2; exit 1; }
fi

# 3. The project, editable, under the constraints. torch's CPU wheel comes from /opt/wheels
#    where the machine has it, else from PyTorch's CPU index.
PIP_ARGS=(-q -c "$CONSTRAINTS")
if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
    PIP_ARGS+=(--find-links /opt/wheels)
elif [[ $CONSTRAINTS == *cpu* ]]; then
    PIP_ARGS+=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
echo ">> pip install -e .[test] (${CONSTRAINTS})"
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip check >/dev/null || { "$VENV/bin/python" -m pip check; exit 1; }

# 4. PyQGIS into the venv: only the packages QGIS needs, not all of dist-packages.
LINKS=$VENV/qgis-system
mkdir -p "$LINKS"
for m in qgis PyQt5 osgeo osgeo_utils psycopg2; do
    [[ -e /usr/lib/python3/dist-packages/$m ]] && ln -sfn "/usr/lib/python3/dist-packages/$m" "$LINKS/$m"
done
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$LINKS" > "$SITE/softcon_qgis_system.pth"
rm -f "$SITE/softcon_qgis_system_old.pth"

# 5. Self-check: versions, CPU/CUDA torch as asked, one Qt.
QGIS_PREFIX_PATH=/usr QT_QPA_PLATFORM=offscreen CONSTRAINTS=$CONSTRAINTS "$VENV/bin/python" scripts/selfcheck.py
echo "$want" > "$STAMP"
