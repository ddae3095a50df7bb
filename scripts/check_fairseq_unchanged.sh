#!/usr/bin/env bash
# fairseq's own tests with and without the plugin: see scripts/check_fairseq_unchanged.py.
#   bash scripts/check_fairseq_unchanged.sh FAIRSEQ_CHECKOUT [--out result.json] [--tests ...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${PYTHON:-$REPO/.venv/bin/python}" "$REPO/scripts/check_fairseq_unchanged.py" "$@"
