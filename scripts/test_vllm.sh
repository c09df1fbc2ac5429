#!/usr/bin/env bash
# masktok's vLLM serving tests (tests/test_serving_vllm.py): a real vLLM server on localhost,
# CPU only, text-only tiny models. Makes the vLLM environment if needed (scripts/install_vllm.sh)
# and runs the tests from the test environment (default .venv-test, made by scripts/test.sh).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${MASKTOK_VENV:-.venv-test}"
start=$SECONDS
bash scripts/install_vllm.sh
echo "vLLM environment: $((SECONDS - start)) s"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "torch==2.14.1" "torchvision==0.29.1" -e ".[dev,mllm,serve]"
fi
"$venv/bin/python" -c "import httpx" 2>/dev/null || \
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.14.1" -e ".[serve]"
start=$SECONDS
MASKTOK_VLLM_TESTS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -s -rA \
  tests/test_serving_vllm.py "$@"
echo "vLLM serving tests: $((SECONDS - start)) s"
