#!/usr/bin/env bash
# Screenshot of QGIS desktop under Xvfb with the SCL DeepLab plugin enabled in a throwaway profile.
#   SHOT=<folder holding project.qgz> [SHOT_DOCK=1 [SHOT_EVALUATE=1]] shoot.sh  -> $SHOT/screen.png
# (make_project.py writes project.qgz: python make_project.py <folder> top.tif="Name" ... bottom.tif="Name")
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHOT=${SHOT:-/tmp/shot}
PROF=$(mktemp -d /tmp/qgisprof.XXXX)
mkdir -p "$PROF/profiles/default/QGIS"
cat > "$PROF/profiles/default/QGIS/QGIS3.ini" <<INI
[PythonPlugins]
scl_deeplab=true
processing=true
[qgis]
checkVersion=false
showTips322=false
INI
export DISPLAY=:77
Xvfb :77 -screen 0 1440x900x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
sleep 2
ROOT="$(cd "$HERE/../.." && pwd)"
export QGIS_PLUGINPATH="$ROOT/.venv/plugins"
export PYTHONPATH="$("$ROOT/.venv/bin/python" "$ROOT/scripts/venv_pythonpath.py"):$ROOT/.venv/plugins"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}
export SHOT_OUT="$SHOT/screen.png"
rm -f "$SHOT_OUT"
qgis --profiles-path "$PROF" --nologo --noversioncheck --code "$HERE/startup.py" "$SHOT/project.qgz" >"$SHOT/qgis.log" 2>&1 &
QGIS=$!
for _ in $(seq 1 90); do [ -s "$SHOT_OUT" ] && break; sleep 1; done
sleep 1
kill "$QGIS" 2>/dev/null || true
wait "$QGIS" 2>/dev/null || true
kill "$XVFB" 2>/dev/null || true
rm -rf "$PROF"
ls -la "$SHOT_OUT"
