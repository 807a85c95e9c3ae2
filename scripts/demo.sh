#!/usr/bin/env bash
# The demo: set-up (skipped when done), then a synthetic RGB-D camera in a
# generated room, video3d_node with the embedded model, and four queries over
# the Query service. Writes outputs/demo/demo.png.
#   bash scripts/demo.sh [--seed N] [--model DIR] [--out DIR]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit $?
. "$ROOT/.build/env.sh"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( 1 + $$ % 100 ))}"
cd "$ROOT"
exec python -m video3d_ros.ros.demo "$@"
