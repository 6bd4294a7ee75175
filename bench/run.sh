#!/usr/bin/env bash
# One full benchmark run (see bench/README.md); arguments go to bench/run.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../.venv/bin/python" "$here/run.py" "$@"
