#!/usr/bin/env bash
# The web view (`agentroom ui`) in a real headless Chromium: two homes paired
# through a real relay, driven over WebDriver (tests/ui/browser_test.py).
# Screenshots land in target/ui-screenshots/ (a CI artifact).
#
# Usage: scripts/check-ui.sh [path/to/agentroom]   (needs chromium + chromium-driver)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/agentroom}
[ -x "$bin" ] || { echo "check-ui: $bin is not executable (cargo build first)" >&2; exit 1; }
for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null || { echo "check-ui: $tool missing (apt-get install chromium chromium-driver)" >&2; exit 1; }
done
# Bounded: the whole run takes well under a minute; a hang fails the check.
exec timeout 180 python3 -B "$root/tests/ui/browser_test.py" "$bin"
