#!/usr/bin/env bash
# Screenshots of the plugin in the real QGIS desktop (under Xvfb), for docs/screenshots/ and the README:
# the Processing toolbox, the Model info and Classify dialogs, the Classify log, the map after Classify.
# Re-run after merging: it installs the repository's current plugin into the profile first.
#   scripts/screenshots.sh [PROFILE_ROOT]
# PROFILE_ROOT is a QGIS profiles folder whose profile already has SoftCon's Python packages installed by the
# plugin (scripts/try_install.sh makes one; default /tmp/softcon-try-install). DEST (default docs/screenshots)
# receives the PNGs, scaled to 1280 px wide.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-/tmp/softcon-try-install}
DEST=${DEST:-docs/screenshots}
PLUGINS="$ROOT/profiles/default/python/plugins"
[ -d "$ROOT/profiles/default/python/softcon_qgis_deps" ] || { echo "no installed packages in $ROOT: run scripts/try_install.sh" >&2; exit 1; }
SHOTS=$(mktemp -d /tmp/softcon-shots-XXXX)
/usr/bin/python3 scripts/build_plugin_zip.py --out-dir "$SHOTS" >/dev/null
rm -rf "$PLUGINS/softcon_qgis"
/usr/bin/python3 -m zipfile -e "$SHOTS"/softcon_qgis-*.zip "$PLUGINS/"
grep -q "softcon_qgis=true" "$ROOT/profiles/default/QGIS/QGIS3.ini" || printf '[PythonPlugins]\nsoftcon_qgis=true\n' >> "$ROOT/profiles/default/QGIS/QGIS3.ini"
DEMO=$(.venv/bin/python -c "from core.classify.demo import demo_raster; print(demo_raster())")  # outside QGIS
for attempt in 1 2; do  # QGIS 3.22 sometimes crashes while starting under Xvfb (QgsClipboard): start again
    env -u PYTHONPATH -u QGIS_PLUGINPATH -u SOFTCON_PYTHON SOFTCON_TOUR=screens SOFTCON_TOUR_OUT="$SHOTS" \
        SOFTCON_DEMO_RASTER="$DEMO" HF_HUB_OFFLINE=1 \
        xvfb-run -a -s "-screen 0 1600x1000x24" qgis --profiles-path "$ROOT" --nologo --code scripts/qgis_tour.py \
        >"$SHOTS/qgis.log" 2>&1 || true
    [ -f "$SHOTS/tour.json" ] && break
done
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(e) for e in d['events']]" "$SHOTS/tour.json"
grep -q '"ok": true' "$SHOTS/tour.json" || { echo "the tour failed; see $SHOTS" >&2; exit 1; }
mkdir -p "$DEST"
for f in toolbox dialog_model_info dialog_classify dialog_classify_log map_classified; do
    convert "$SHOTS/$f.png" -resize 1280x "$DEST/$f.png"
done
echo "screenshots in $DEST (raw ones and the SoftCon log in $SHOTS)"
