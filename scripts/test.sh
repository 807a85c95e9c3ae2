#!/usr/bin/env bash
# Run the whole test suite: set-up (skipped when done), then pytest.
#   bash scripts/test.sh [pytest args...]
# Exit status is pytest's; "no tests collected" (5) is a failure like any other.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit $?
. "$ROOT/.build/env.sh"
cd "$ROOT"
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "[test] pytest collected no tests: treating this as a failure" >&2
fi
exit "$rc"
