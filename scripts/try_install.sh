#!/usr/bin/env bash
# The plugin as a new user meets it, for real: a fresh QGIS profile, the plugin zip unpacked into it as
# "Install from ZIP" does, the real QGIS desktop (under Xvfb) with the system Python, *Install…* pressed,
# pip run by the plugin. Then, in the same session (no restart): Classify started from its dialog and its worker
# killed with SIGKILL mid-run (the dialog must say so, QGIS must stay up), and the screenshots tour (Classify on
# the demo scene from the dialog, the map). Prints the outcome, times and disk used; the screenshots go to DEST
# (default docs/screenshots).
#   scripts/try_install.sh [OUT_DIR]      (default /tmp/softcon-try-install; removed first)
# WHEELS=DIR installs from the wheels in DIR instead of the package index (pip's --find-links, no index): the
# same plugin code path without the 373 MB download.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/softcon-try-install}
rm -rf "$OUT"
mkdir -p "$OUT/profiles/default/python/plugins" "$OUT/profiles/default/QGIS" "$OUT/shots" "$OUT/cache"
/usr/bin/python3 scripts/build_plugin_zip.py --out-dir "$OUT" >/dev/null
/usr/bin/python3 -m zipfile -e "$OUT"/softcon_qgis-*.zip "$OUT/profiles/default/python/plugins/"
printf '[PythonPlugins]\nsoftcon_qgis=true\n' > "$OUT/profiles/default/QGIS/QGIS3.ini"
# the demo scene stacked onto one GeoTIFF (with the repository's Python: the new profile has no packages yet)
[ -d "${SOFTCON_CACHE:-$HOME/.cache/softcon}/data" ] && cp -r "${SOFTCON_CACHE:-$HOME/.cache/softcon}/data" "$OUT/cache/"
DEMO=$(SOFTCON_CACHE="$OUT/cache" .venv/bin/python -c "from core.classify.demo import demo_raster; print(demo_raster())")
PIP_ENV=()
[ -n "${WHEELS:-}" ] && PIP_ENV=(PIP_FIND_LINKS="$WHEELS" PIP_NO_INDEX=1)
start=$(date +%s)
for attempt in 1 2; do  # QGIS 3.22 sometimes crashes while starting under Xvfb (QgsClipboard): again
    rm -rf "$OUT/profiles/default/python/softcon_qgis_deps"
    env -u PYTHONPATH -u QGIS_PLUGINPATH -u SOFTCON_PYTHON "${PIP_ENV[@]}" SOFTCON_TOUR=install SOFTCON_TOUR_OUT="$OUT/shots" \
        SOFTCON_DEMO_RASTER="$DEMO" SOFTCON_CACHE="$OUT/cache" HF_HUB_OFFLINE=1 \
        xvfb-run -a -s "-screen 0 1600x1000x24" qgis --profiles-path "$OUT" --nologo --code scripts/qgis_tour.py \
        >"$OUT/shots/qgis.log" 2>&1 || true
    [ -f "$OUT/shots/tour.json" ] && grep -q '"install finished"' "$OUT/shots/tour.json" && break
done
echo "install, kill and classify tour: $(( $(date +%s) - start )) s"
du -sh "$OUT/profiles/default/python/softcon_qgis_deps" 2>/dev/null || echo "no deps folder"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(e) for e in d['events'] if e['what']!='started']" "$OUT/shots/tour.json"
grep -q '"ok": true' "$OUT/shots/tour.json" || { echo "the tour failed; see $OUT/shots" >&2; exit 1; }
DEST=${DEST:-docs/screenshots}
mkdir -p "$DEST"
convert "$OUT/shots/install_2_confirm.png" -resize 1280x "$DEST/install_confirm.png"
convert "$OUT/shots/install_3_progress.png" -resize 1280x "$DEST/install_progress.png" || true
for f in kill_worker_message toolbox dialog_model_info dialog_classify dialog_classify_log map_classified; do
    convert "$OUT/shots/$f.png" -resize 1280x "$DEST/$f.png"
done
echo "screenshots in $DEST (raw ones and the SoftCon log in $OUT/shots)"
