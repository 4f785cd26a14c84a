#!/usr/bin/env bash
# Renders a threadcenter report to a PNG with headless Chromium, so a person (or a reviewer
# without a browser) can check that the charts are legible: axis labels, legends, no overlaps.
#
#   scripts/check_report.sh REPORT.html [OUT.png]        screenshot an existing report
#   scripts/check_report.sh --csv results.csv [OUT.png]  render the CSV first, then screenshot
#
# Chromium runs offline (no network services, throwaway profile). If it is missing, install it
# with `apt-get install -y chromium`. WIDTH and HEIGHT (pixels) size the window; the page is
# clipped to HEIGHT.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[[ $# -ge 1 ]] || usage
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ $1 == --csv ]]; then
    [[ $# -ge 2 ]] || usage
    csv=$2
    html="$(dirname "$csv")/report.html"
    png=${3:-"$(dirname "$csv")/report.png"}
    (cd "$repo" && cargo run --quiet -- report --input "$csv" --out "$html")
else
    html=$1
    png=${2:-"${html%.html}.png"}
fi
[[ -f $html ]] || { echo "check_report: no such file: $html" >&2; exit 1; }

browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[[ -n $browser ]] || { echo "check_report: chromium not found (apt-get install -y chromium)" >&2; exit 1; }

abs_html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
case $png in /*) abs_png=$png ;; *) abs_png=$(pwd)/$png ;; esac
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$abs_png"

# Chromium is chatty on stderr (dbus, GPU, its own launcher script); show it only on failure.
if ! "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars \
    --window-size="${WIDTH:-1400},${HEIGHT:-6000}" \
    --screenshot="$abs_png" "file://$abs_html" >"$log" 2>&1 || [[ ! -s $abs_png ]]; then
    cat "$log" >&2
    echo "check_report: no screenshot written" >&2
    exit 1
fi
echo "$abs_png"
