#!/usr/bin/env bash
# Screenshots of the accuracy-assessment loop in the real QGIS desktop (under Xvfb), for docs/screenshots/:
# 'Create validation sample' run from its dialog on a class map, one point labelled in its form through the value
# map, the other labels of LABELS.json (sample_id -> class, labelled by eye) entered and saved, 'Assess accuracy
# and estimate areas' run from its dialog, and its report.
#   scripts/assess_tour.sh CLASSES.tif LABELS.json [SIZE]
# Runs the repository's plugin with the project's .venv packages (as the tests' qgis_process runs do), on the demo
# scene of $SOFTCON_CACHE. Needs xvfb-run (apt-get install xvfb) and ImageMagick's convert.
set -euo pipefail
cd "$(dirname "$0")/.."
MAP=$(realpath "$1")
LABELS=$(realpath "$2")
SIZE=${3:-400}
DEST=${DEST:-docs/screenshots}
SHOTS=$(mktemp -d /tmp/softcon-assess-XXXX)
mkdir -p "$SHOTS/profiles/default/QGIS" "$SHOTS/plugins"
ln -s "$PWD/softcon_qgis" "$SHOTS/plugins/softcon_qgis"
printf '[PythonPlugins]\nsoftcon_qgis=true\n' > "$SHOTS/profiles/default/QGIS/QGIS3.ini"
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for attempt in 1 2; do  # QGIS 3.22 sometimes crashes while starting under Xvfb (QgsClipboard): start again
    env -u QT_QPA_PLATFORM PYTHONPATH="$SITE" QGIS_PLUGINPATH="$SHOTS/plugins" SOFTCON_TOUR=assess \
        SOFTCON_TOUR_OUT="$SHOTS/out" SOFTCON_TOUR_MAP="$MAP" SOFTCON_TOUR_LABELS="$LABELS" SOFTCON_TOUR_SIZE="$SIZE" \
        HF_HUB_OFFLINE=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        qgis --profiles-path "$SHOTS" --nologo --code scripts/qgis_tour.py >"$SHOTS/qgis.log" 2>&1 || true
    grep -q '"finished"' "$SHOTS/out/tour.json" 2>/dev/null && break
done
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(e) for e in d['events']]" "$SHOTS/out/tour.json"
grep -q '"ok": true' "$SHOTS/out/tour.json" || { echo "the tour failed; see $SHOTS" >&2; exit 1; }
mkdir -p "$DEST"
for f in assess_3_label_value_map assess_4_labelled assess_5_log assess_6_report; do  # 1 and 2 (the dialog, the sample) stay in SHOTS
    convert "$SHOTS/out/$f.png" -resize 1280x "$DEST/$f.png"
done
echo "screenshots in $DEST (raw ones, the sample, the accuracy outputs and the logs in $SHOTS)"
