#!/usr/bin/env bash
# Run the CUDA tests (pytest -m cuda) on a machine with a GPU and print a short summary.
# Works on a bare machine where torch with CUDA is installed but gradaudit is not:
# the repository root goes on PYTHONPATH (set GRADAUDIT_PIP_INSTALL=1 to pip install -e . --no-deps
# instead). Exit status: pytest's (0 all passed, 1 a test failed, 5 none collected).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python}"

if [[ "${GRADAUDIT_PIP_INSTALL:-0}" == "1" ]]; then
    "$PYTHON" -m pip install -q -e . --no-deps || exit 2
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
# gradaudit's own light dependencies, in case the machine lacks them
"$PYTHON" -c "import click, tabulate, pytest" 2>/dev/null || "$PYTHON" -m pip install -q click tabulate pytest

"$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
PY

LOG="$(mktemp)"
"$PYTHON" -m pytest -m cuda -v -p no:cacheprovider tests/ 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}

echo
echo "== gradaudit CUDA summary =="
echo "passed:  $(grep -c ' PASSED' "$LOG")"
echo "failed:  $(grep -c ' FAILED' "$LOG")"
echo "skipped: $(grep -c ' SKIPPED' "$LOG")"
grep ' FAILED' "$LOG" | sed 's/^/  /' || true
"$PYTHON" - <<'PY' || true
# What GA405 reports for the hard-coded sample and one built-in on the GPU, for the record.
import torch, torch.nn.functional as F
import gradaudit
from gradaudit.targets import resolve
if torch.cuda.is_available():
    (hard,) = resolve("samples/devices.py:hard_coded_zeros")
    for name, target in (("samples/devices.py:hard_coded_zeros", hard.obj), ("F.relu", F.relu)):
        report = gradaudit.audit(target, name=name, select=["GA405"], device="cuda")
        print(f"{name}: {report.status}; " + "; ".join(f"{f.status} {f.dtype}: {f.message[:110]}" for f in report.findings))
PY
exit "$STATUS"
