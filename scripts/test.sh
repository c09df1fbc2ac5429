#!/usr/bin/env bash
# masktok's test suite: creates the virtual environment if needed, installs masktok with every
# extra the tests exercise (CPU-only use of the torch/torchvision pair that imports here) and
# Debian's chromium for the demo's browser test, and runs pytest on 2 workers. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${MASKTOK_VENV:-.venv-test}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --disable-pip-version-check --upgrade pip
python -m pip install -q --disable-pip-version-check \
  "torch==2.14.1" "torchvision==0.29.1" -e ".[dev,mllm,train,eval,demo]"
bash scripts/install_browser.sh
python -m pytest -n 2 -q -p no:cacheprovider "$@"
