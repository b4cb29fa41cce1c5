#!/usr/bin/env bash
# Try the newest releases of the packages the tested sets pin (constraints/cpu.txt) in a scratch venv and report
# what breaks. Nothing here changes the repository except the report.
#   bash scripts/check_latest.sh [REPORT.md]        (default: constraints/check-latest.md)
#   CHECK_LATEST_TESTS="tests/a.py tests/b.py"       test files to run (default: the config / train / eval set below)
#   CHECK_LATEST_VENV=DIR                            scratch venv (default: a new temp dir, removed afterwards)
#   CHECK_LATEST_TORCH=1                             also upgrade torch (default: keep the tested CPU build)
# The report lists: tested version vs newest installed, the resolver's complaints (pip check), and per test file
# passed / failed / skipped counts with the first failures. Exit status 0 even when something breaks (it is a
# report); 2 when the scratch venv could not be built.
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT="${1:-constraints/check-latest.md}"
PY="${PYTHON:-python3}"
PKGS=(torch transformers trl accelerate peft datasets swebench)
TESTS="${CHECK_LATEST_TESTS:-tests/test_train_config.py tests/test_train.py tests/test_shared_prompt.py tests/test_math_evaluate.py tests/test_architecture.py}"
VENV="${CHECK_LATEST_VENV:-$(mktemp -d /tmp/swe-srl-latest.XXXXXX)}"
cleanup() { [ -z "${CHECK_LATEST_VENV:-}" ] && rm -rf "$VENV"; }
trap cleanup EXIT
log() { printf '\033[1m[check_latest]\033[0m %s\n' "$*" >&2; }

log "scratch venv $VENV"
"$PY" -m venv "$VENV" || exit 2
V="$VENV/bin/python"
# torch: the tested CPU build by default (a newest torch from a default index is a multi-GB CUDA build);
# CHECK_LATEST_TORCH=1 upgrades it too. Then everything else unpinned, each at its newest release.
if [ "${CHECK_LATEST_TORCH:-0}" = 1 ]; then torch_req=(--upgrade torch); else
  torch_req=("torch==$(grep -E '^torch==' constraints/cpu.txt | cut -d= -f3)"); fi
"$V" -m pip install -q "${torch_req[@]}" >"$VENV/install.log" 2>&1 || { log "torch install failed"; tail -20 "$VENV/install.log"; exit 2; }
upgrade=("${PKGS[@]}"); [ "${CHECK_LATEST_TORCH:-0}" = 1 ] || upgrade=("${PKGS[@]:1}")
# swe-srl with its own ranges first, then the newest releases over them (past pyproject's upper bounds: pip check
# below then names each bound a newest release breaks)
"$V" -m pip install -q -e ".[dev,swebench]" >>"$VENV/install.log" 2>&1 \
  || { log "install failed"; tail -20 "$VENV/install.log"; exit 2; }
"$V" -m pip install -q --upgrade --upgrade-strategy only-if-needed "${upgrade[@]}" >>"$VENV/install.log" 2>&1 \
  || { log "upgrade failed"; tail -20 "$VENV/install.log"; exit 2; }

{
  echo "# Newest releases vs the tested set"
  echo
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), $("$V" -c 'import platform; print("Python", platform.python_version())'),"
  echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg). Tested set: constraints/cpu.txt."
  echo
  echo "| package | tested | newest installed |"
  echo "|---|---|---|"
  for p in "${PKGS[@]}"; do
    tested="$(grep -i -E "^${p}==" constraints/cpu.txt | cut -d= -f3)"
    newest="$("$V" -m pip show "$p" 2>/dev/null | awk '/^Version:/{print $2}')"
    mark=""; [ "$tested" != "${newest%%+*}" ] && mark=" (newer)"
    echo "| $p | ${tested:-?} | ${newest:-not installed}$mark |"
  done
  echo
  echo "## pip check"
  echo
  echo '```'
  "$V" -m pip check 2>&1 | grep -v '^WARNING' || true
  echo '```'
  echo
  echo "## Tests"
  echo
  echo "| test file | result |"
  echo "|---|---|"
} >"$REPORT.tmp"

fails=""
for t in $TESTS; do
  log "pytest $t"
  out="$(OMP_NUM_THREADS=1 nice -n 10 "$V" -m pytest -q -p no:cacheprovider "$t" 2>&1)"
  summary="$(printf '%s\n' "$out" | grep -E '(passed|failed|error|skipped|no tests ran)' | tail -1)"
  echo "| $t | ${summary:-no summary (collection crashed?)} |" >>"$REPORT.tmp"
  if printf '%s\n' "$summary" | grep -q -E 'failed|error' || [ -z "$summary" ]; then
    fails+="### $t"$'\n\n```\n'"$(printf '%s\n' "$out" | grep -E '^(FAILED|ERROR)|Error' | head -15)"$'\n```\n\n'
  fi
done
{
  echo
  if [ -n "$fails" ]; then echo "## What breaks"; echo; printf '%s' "$fails"; else echo "Nothing broke in these tests."; fi
} >>"$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
log "report: $REPORT"
