#!/usr/bin/env bash
# Install Debian's chromium for the demo's browser test (tests/test_demo_browser.py), which drives
# it with Playwright through executable_path=/usr/bin/chromium; no browser is downloaded.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq chromium
/usr/bin/chromium --version
