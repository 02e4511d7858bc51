#!/usr/bin/env bash
# Create .venv in the repository root and install stylenada with its dependencies.
# torch 2.14.1 / torchvision 0.29.1 are pinned because they install from local disk on our machines;
# on your own machine any torch >= 2.1 works (pip install -e .).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/pip install -q -e ".[dev,faces,ui,sweep]" 2>&1 | grep -v "^WARNING: Location" || true
# dlib's 68-point face landmark model for `stylenada edit` (Debian's libdlib-data); optional elsewhere.
if [ ! -f /usr/share/dlib/shape_predictor_68_face_landmarks.dat ] && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq libdlib-data) >/dev/null 2>&1 \
    || echo "note: could not install libdlib-data; face alignment needs --landmarks PATH"
fi
# Chromium for the browser tests of `stylenada ui` and the sweep's index page (Playwright drives the system's
# browser: its own browser downloads need the internet).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "note: could not install chromium; the browser tests will be skipped"
fi
.venv/bin/python -c "import stylenada, torch, open_clip; print('stylenada ready: torch', torch.__version__)"
