#!/usr/bin/env bash
# The comparison study in the order its answers arrive: MRPC's stock head and HIRE first, then
# the other heads, then the other tasks (the cheapest first), then seeds 6-10 of MRPC and RTE. Every phase skips
# the runs already in benchmarks/results/compare and resumes a killed one, so the script can
# be stopped and started again at any time; commit the results as they land and refresh the
# README with `python benchmarks/report.py --refresh --update-readme`.
#
#   bash benchmarks/study.sh                     # from the repository, in the background
#   STUDY_CODE=/path/to/frozen/worktree bash benchmarks/study.sh   # train with a frozen copy of
#                                                # the code while the checkout is being edited
#   STUDY_JOBS=1 bash benchmarks/study.sh        # one run at a time (1 thread), leaving a core free
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CODE="${STUDY_CODE:-$REPO}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
run() {
  (cd "$CODE" && PYTHONPATH="$CODE" "$PY" benchmarks/quality.py --jobs "${STUDY_JOBS:-2}" \
     --out "$REPO/benchmarks/results/compare" --work "$REPO/benchmarks/runs" "$@")
}
run --tasks MRPC --heads stock hire --seeds 1-5
run --tasks MRPC --heads hire-no-fusion scalar-mix last4-mean --seeds 1-5
run --tasks RTE --heads stock hire --seeds 1-5
run --tasks STS-B CoLA --heads stock hire --seeds 1-5
run --tasks CoLA --heads hire-no-fusion scalar-mix last4-mean --seeds 1-5
run --tasks STS-B --heads hire-no-fusion scalar-mix last4-mean --seeds 1-5
run --tasks RTE --heads hire-no-fusion scalar-mix last4-mean --seeds 1-5
run --tasks MRPC RTE --seeds 6-10
