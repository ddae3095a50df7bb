#!/usr/bin/env bash
# Download GLUE (needs a network) into the layout prepare_glue.sh reads:
#
#   bash glue_prep/download_glue.sh <dir> [--tasks all|CoLA,SST-2,...] [--path-to-mrpc DIR]
#
# A thin wrapper around `python -m glue_prep.download` (see glue_prep/README.md).
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

if [[ $# -lt 1 ]]; then
  echo "usage: bash $0 <dir> [--tasks all|CoLA,SST-2,...] [--path-to-mrpc DIR]   (--help for more)" >&2
  exit 2
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m glue_prep.download "$@"
