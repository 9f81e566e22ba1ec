#!/usr/bin/env bash
# One bounded measurement of flowergan on a GPU or TPU (what: benchmarks/accelerator_check.py).
#
#   bash benchmarks/accelerator_check.sh [--out=DIR] [--budget_s=420] [--tiny] [--notorch]
#
# Writes accelerator_check.json and accelerator_check.md under --out (default: $OUT if set, else
# runs/accelerator_check). Exit status: 0 when every flowergan (JAX) measurement succeeded.
# Pure-Python packages the machine lacks travel as wheels in .whl/ (docs/performance.md says
# how to fill it); they are installed outside the checkout first. The Python run
# is `${PYTHON:-python3}`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
python=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
  site=${TMPDIR:-/tmp}/flowergan-accelerator-site
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl \
    || { echo "error: installing the wheels in .whl/ failed (see above)" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX would otherwise take 75% of the GPU's memory at start: torch runs beside it, and the
# memory statistics should show what the step needs.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export PYTHONUNBUFFERED=1
exec "$python" -m benchmarks.accelerator_check "$@"
