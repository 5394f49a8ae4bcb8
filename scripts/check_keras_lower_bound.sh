#!/usr/bin/env bash
# Checks tfprune against an old Keras (and TensorFlow): the tested lower bound of setup.cfg.
#
# Usage: scripts/check_keras_lower_bound.sh [KERAS_VERSION [TENSORFLOW_VERSION]] [-- PYTEST_ARGS...]
#
#   KERAS_VERSION       default: the lower bound of `keras>=` in setup.cfg, pinned exactly (3.0 -> 3.0.0)
#   TENSORFLOW_VERSION  default: the lower bound of `tensorflow>=` in setup.cfg; a two-part version
#                       X.Y means the first published release of that series (2.16 -> 2.16.1, since
#                       2.16.0 was never published; ==X.Y.* when the index cannot be asked)
#   PYTEST_ARGS         replace the default list of test files (e.g. -- tests/test_compat.py -x)
#
# It makes a fresh virtual environment in a temporary folder. When the requested TensorFlow is the
# one already installed for $PYTHON, the environment reuses it (--system-site-packages) and only the
# requested Keras is installed on top, which takes about a minute; otherwise TensorFlow and Keras
# are installed into a clean environment (about 1.5 GB of wheels with their dependencies).
# tfprune is installed from a copy of this repository with its test extra and `keras==KERAS`, so pip
# cannot upgrade Keras past the requested release; the tests then run against the repository's
# source (the current directory comes first on sys.path). Prints the versions actually imported,
# runs the fast subset (-m "not slow") of the core tests, and the elapsed time. Exits non-zero
# when the install fails or any test fails.
#
# Environment: PYTHON (interpreter for the venv, default python3), KEEP_VENV=1 (keep the venv and
# print its path instead of deleting it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
START=$SECONDS

elapsed() { echo "elapsed: $((SECONDS - START)) s ($1)"; }

lower_bound() {  # the version after `NAME>=` in setup.cfg's install_requires
    sed -n "s/^[[:space:]]*$1[[:space:]]*>=[[:space:]]*\([0-9][0-9.]*\).*/\1/p" "$REPO/setup.cfg" | head -n 1
}

KERAS_VERSION=""
TF_VERSION=""
if [[ $# -gt 0 && "$1" != "--" ]]; then KERAS_VERSION="$1"; shift; fi
if [[ $# -gt 0 && "$1" != "--" ]]; then TF_VERSION="$1"; shift; fi
if [[ $# -gt 0 ]]; then
    if [[ "$1" != "--" ]]; then
        echo "unexpected argument: $1 (usage: $0 [KERAS_VERSION [TENSORFLOW_VERSION]] [-- PYTEST_ARGS...])" >&2
        exit 2
    fi
    shift
fi
PYTEST_ARGS=("${@}")

if [[ -z "$KERAS_VERSION" ]]; then KERAS_VERSION="$(lower_bound keras)"; fi
if [[ -z "$TF_VERSION" ]]; then TF_VERSION="$(lower_bound tensorflow)"; fi
if [[ -z "$KERAS_VERSION" || -z "$TF_VERSION" ]]; then
    echo "could not read the keras/tensorflow lower bounds from $REPO/setup.cfg" >&2
    exit 2
fi
KERAS_PIN="keras==$KERAS_VERSION"
if [[ "$TF_VERSION" =~ ^[0-9]+\.[0-9]+$ ]]; then
    # The first published release of the series X.Y (tensorflow 2.16.0 does not exist; 2.16.1 does).
    FIRST="$("$PYTHON" -m pip index versions tensorflow 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' \
        | grep -E "^${TF_VERSION//./\\.}\.[0-9]+$" | sort -t. -k3,3n | head -n 1 || true)"
    TF_VERSION="${FIRST:-$TF_VERSION.*}"
fi
TF_PIN="tensorflow==$TF_VERSION"

# The core tests, those of them that exist.
if [[ ${#PYTEST_ARGS[@]} -eq 0 ]]; then
    for name in test_compat test_targets test_layers test_wrapping test_masks test_masks_block \
                test_pruning test_profile test_structured_graph test_structured_remove test_autoprune; do
        if [[ -f "$REPO/tests/$name.py" ]]; then PYTEST_ARGS+=("tests/$name.py"); fi
    done
    for path in "$REPO"/tests/test_scores*.py "$REPO"/tests/scores/test_*.py; do
        if [[ -f "$path" ]]; then PYTEST_ARGS+=("${path#"$REPO/"}"); fi
    done
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tfprune-keras-lower.XXXXXX")"
cleanup() {
    local rc=$?
    if [[ "${KEEP_VENV:-0}" == "1" ]]; then echo "kept the environment: $WORK/venv"; else rm -rf "$WORK"; fi
    elapsed "total, exit status $rc"
}
trap cleanup EXIT

# Is the requested TensorFlow the one installed for $PYTHON? Then reuse it instead of downloading it.
INSTALLED_TF="$("$PYTHON" - "$TF_PIN" <<'EOF' 2>/dev/null || true
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
try:
    installed = version("tensorflow")
except PackageNotFoundError:
    sys.exit()
if Requirement(sys.argv[1]).specifier.contains(installed, prereleases=True):
    print(installed)
EOF
)"

echo "== tfprune lower-bound check: $KERAS_PIN, $TF_PIN, python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
if [[ -n "$INSTALLED_TF" ]]; then
    echo "== tensorflow $INSTALLED_TF is installed: venv with --system-site-packages, installing only $KERAS_PIN over it"
    "$PYTHON" -m venv --system-site-packages "$WORK/venv"
    TO_INSTALL=("$KERAS_PIN")
else
    echo "== clean venv: installing $TF_PIN and $KERAS_PIN"
    "$PYTHON" -m venv "$WORK/venv"
    TO_INSTALL=("$TF_PIN" "$KERAS_PIN")
fi
VPY="$WORK/venv/bin/python"

# Install tfprune from a copy of the repository, so that the build leaves nothing in the working tree.
mkdir -p "$WORK/src"
tar -C "$REPO" --exclude=__pycache__ --exclude='*.egg-info' -cf - \
    setup.cfg pyproject.toml README.md LICENSE tfprune | tar -C "$WORK/src" -xf -
"$VPY" -m pip install --quiet --upgrade pip
"$VPY" -m pip install --quiet "$WORK/src[test]" "${TO_INSTALL[@]}"
elapsed "installed"

cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
"$VPY" - <<'EOF'
import sys
from importlib.metadata import version

import keras
import numpy
import tensorflow as tf

import tfprune

print(f"== imported: python {sys.version.split()[0]}, tensorflow {tf.__version__}, keras {keras.__version__} "
      f"(backend {keras.backend.backend()}), numpy {numpy.__version__}, tf_keras {version('tf_keras')}, "
      f"tensorflow-model-optimization {version('tensorflow-model-optimization')}")
print(f"== keras from {keras.__file__}")
print(f"== tfprune from {tfprune.__file__}")
EOF

echo "== $VPY -m pytest -q -m 'not slow' -p no:cacheprovider ${PYTEST_ARGS[*]}"
"$VPY" -m pytest -q -m "not slow" -p no:cacheprovider "${PYTEST_ARGS[@]}"
