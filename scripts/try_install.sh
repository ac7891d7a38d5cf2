#!/usr/bin/env bash
# The plugin as a new user meets it, for real: a fresh QGIS profile, the plugin zip unpacked into it as
# "Install from ZIP" does, the real QGIS desktop (under Xvfb) with the system Python, *Install…* pressed,
# pip against the package index. Then QGIS is started again (the restart the dialog asks for) and
# scripts/screenshots.sh runs Classify on the demo scene from the dialog. Prints the outcome, time and disk
# used; the screenshots go to DEST (default docs/screenshots).
#   scripts/try_install.sh [OUT_DIR]      (default /tmp/softcon-try-install; removed first)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/softcon-try-install}
rm -rf "$OUT"
mkdir -p "$OUT/profiles/default/python/plugins" "$OUT/profiles/default/QGIS" "$OUT/shots"
/usr/bin/python3 scripts/build_plugin_zip.py --out-dir "$OUT" >/dev/null
/usr/bin/python3 -m zipfile -e "$OUT"/softcon_qgis-*.zip "$OUT/profiles/default/python/plugins/"
printf '[PythonPlugins]\nsoftcon_qgis=true\n' > "$OUT/profiles/default/QGIS/QGIS3.ini"
run_qgis() {  # MODE OUTDIR: the desktop QGIS of the system (apt), no Python path of ours
    for attempt in 1 2; do  # QGIS 3.22 sometimes crashes while starting under Xvfb (QgsClipboard): again
        env -u PYTHONPATH -u QGIS_PLUGINPATH SOFTCON_TOUR="$1" SOFTCON_TOUR_OUT="$2" HF_HUB_OFFLINE=1 \
            xvfb-run -a -s "-screen 0 1600x1000x24" qgis --profiles-path "$OUT" --nologo --code scripts/qgis_tour.py \
            >"$2/qgis.log" 2>&1 || true
        [ -f "$2/tour.json" ] && break
    done
}
start=$(date +%s)
run_qgis install "$OUT/shots"
echo "install tour: $(( $(date +%s) - start )) s"
du -sh "$OUT/profiles/default/python/softcon_qgis_deps" 2>/dev/null || echo "no deps folder"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(e) for e in d['events'] if e['what']!='started']" "$OUT/shots/tour.json"
grep -q '"ok": true' "$OUT/shots/tour.json" || { echo "the install failed; see $OUT/shots" >&2; exit 1; }
DEST=${DEST:-docs/screenshots}
mkdir -p "$DEST"
convert "$OUT/shots/install_2_confirm.png" -resize 1280x "$DEST/install_confirm.png"
convert "$OUT/shots/install_3_progress.png" -resize 1280x "$DEST/install_progress.png"
scripts/screenshots.sh "$OUT"   # after the restart: the dialogs, a Classify run, the map
