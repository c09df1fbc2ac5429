#!/usr/bin/env bash
# masktok's test suite: creates the virtual environment if needed, installs masktok with every
# extra the tests exercise and Debian's chromium for the demo's browser test, and runs pytest on 2
# workers. The VLM tests build Qwen-VL processors, which need torchvision; on a CPU machine the
# only torchvision that imports is the torch 2.14.1 / torchvision 0.29.1 pair (a CUDA build, used
# on the CPU here), so that pair is installed rather than the small CPU wheel torch 2.13.0 the
# main job uses. The real data comes with the repository (tests/data); the GPL-3.0 data a few
# tests read is fetched by `python scripts/fetch_test_data.py` (README, "Tests"). The default run
# leaves out tests marked slow; extra arguments go to pytest (`-m slow` runs those).
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
