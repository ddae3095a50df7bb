#!/usr/bin/env bash
# GLUE files -> the binaries fairseq's RoBERTa GLUE recipe consumes, offline.
#
#   bash glue_prep/prepare_glue.sh <glue_data_dir> <TASK|ALL> <output_dir> [options]
#
# A thin wrapper around `python -m glue_prep` (see glue_prep/README.md, or --help).
# Python: $PYTHON if set, else the repository's .venv/bin/python if present, else python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
  PY="$ROOT/.venv/bin/python"
else
  PY="python3"
fi

if [[ $# -lt 3 && " $* " != *" -h "* && " $* " != *" --help "* ]]; then
  echo "usage: bash $0 <glue_data_dir> <TASK|ALL> <output_dir> [options]   (--help for options)" >&2
  exit 2
fi

# Run from the checkout too when the package is not installed.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m glue_prep "$@"
