#!/usr/bin/env bash
# Set up sapiens-blender's development environment in .venv/ and run the main job on the bundled
# sample. Safe to run again: it reuses what is already installed.
#
#   bash scripts/setup.sh            set up, then run `sapiens-engine demo` on the bundled sample
#   bash scripts/setup.sh --no-demo  set up only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DEMO=1
[ "${1:-}" = "--no-demo" ] && RUN_DEMO=0

say() { printf '\n== %s\n' "$*"; }

# 1. open3d needs Debian's libusb-1.0-0.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing libusb-1.0-0 (open3d needs it)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libusb-1.0-0 >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libusb-1.0-0 >/dev/null; }
    else
        echo "warning: libusb-1.0-0 is missing and cannot be installed here (not root or no apt-get);" >&2
        echo "         open3d (watertight meshes) will not import until it is installed." >&2
    fi
fi

# 2. Python 3.11+ virtual environment.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            PY=$candidate; break
        fi
    done
fi
[ -n "$PY" ] || { echo "error: Python 3.11 or newer is needed" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi

# 3. The engine and the test environment. pip >= 25.1 reads pyproject's dependency groups;
#    the test group pins torch==2.13.0 (CPU build) and numpy<2 (bpy 5.0.1 needs it).
say "installing the engine and the test tools into .venv"
.venv/bin/python -m pip install -q --upgrade "pip>=25.1"
.venv/bin/python -m pip install -q -e . --group test
.venv/bin/python - <<'PY'
import bpy, numpy, open3d, torch
print(f"torch {torch.__version__}, numpy {numpy.__version__}, bpy {bpy.app.version_string}, open3d {open3d.__version__}")
PY

# 4. The main job on the bundled sample.
if [ "$RUN_DEMO" = 1 ]; then
    say "running the main job: sapiens-engine demo (bundled sample -> avatar in demo_out/)"
    .venv/bin/sapiens-engine demo --out "$ROOT/demo_out"
fi
say "done. Run the tests with: .venv/bin/python -m pytest"
