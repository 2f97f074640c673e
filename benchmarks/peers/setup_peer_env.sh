#!/usr/bin/env bash
# Create (idempotently) the peer benchmark virtualenv: SBX, Stable-Baselines3,
# gymnasium, RLtools (+ MKL) on Python 3.11, with the CPU build of torch 2.13.0
# that lies on this machine's disk. Never lets pip fetch a CUDA build of torch.
#
# Usage: bash benchmarks/peers/setup_peer_env.sh [--force] [--with-l2f]
#   --with-l2f            also install l2f==2.0.18 (the L2F quadrotor simulator; sdist only, so
#                         pip compiles it: ~15 min on 2 idle cores, ~55 min on a busy machine;
#                         pip caches the wheel). Only benchmarks/quadrotor_vs_l2f.py needs it.
#   env PEER_VENV=/path   venv location (default: <repo root>/.bench-venv)
#   env TORCH_WHEEL=/path explicit torch-2.13.0+cpu wheel (default: searched in pip's find-links)
#   env PYTHON311=/path   explicit Python 3.11 interpreter
# A second call is a no-op (stamp file) unless --force or the pins changed.
# The last line of stdout is the venv path.
#
# Pinned top-level versions (full pin set: requirements-peer.txt):
#   torch 2.13.0+cpu, sbx-rl 0.28.0, stable-baselines3 2.9.2, gymnasium 1.4.0,
#   rltools 2.2.1, mkl 2026.2.0, mkl-include 2026.2.0,
#   jax/jaxlib 0.10.2, flax 0.12.8, optax 0.2.8, numpy 2.4.6
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${PEER_VENV:-$ROOT/.bench-venv}"
REQ="$HERE/requirements-peer.txt"
STAMP="$VENV/.peer-env-stamp"
TORCH_VERSION="2.13.0"
L2F_VERSION="2.0.18"
SETUP_VERSION="1"   # bump to force a reinstall everywhere

FORCE=0
WITH_L2F=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --with-l2f) WITH_L2F=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "setup_peer_env.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done

die() { echo "setup_peer_env.sh: ERROR: $*" >&2; exit 1; }
log() { echo "[setup_peer_env] $*" >&2; }

want_stamp="setup=$SETUP_VERSION torch=$TORCH_VERSION req=$(sha256sum "$REQ" | cut -d' ' -f1)"

# Optional l2f (not in requirements-peer.txt: it builds from source). Idempotent.
ensure_l2f() {
  [[ $WITH_L2F == 1 ]] || return 0
  local vpy="$VENV/bin/python"
  if "$vpy" -c "import importlib.metadata as m, sys; sys.exit(m.version('l2f') != '$L2F_VERSION')" 2>/dev/null; then
    log "l2f $L2F_VERSION already installed"
    return 0
  fi
  log "installing l2f==$L2F_VERSION (compiles its C++ extension: minutes)"
  "$vpy" -m pip install -q "l2f==$L2F_VERSION" >&2
  "$vpy" -c "import l2f" || die "l2f does not import in $VENV"
}

# ---- fast path: already set up -------------------------------------------
if [[ $FORCE == 0 && -f "$STAMP" && -x "$VENV/bin/python" ]] \
   && [[ "$(cat "$STAMP")" == "$want_stamp" ]] \
   && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  log "peer venv already set up (stamp matches); nothing to do"
  ensure_l2f
  echo "$VENV"
  exit 0
fi

# ---- Python 3.11 -----------------------------------------------------------
is_py311() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }
PY=""
for cand in "${PYTHON311:-}" python3.11 /root/.pyenv/versions/3.11.7/bin/python3.11 /usr/bin/python3.11; do
  [[ -n "$cand" ]] || continue
  if is_py311 "$cand"; then PY="$cand"; break; fi
done
[[ -n "$PY" ]] || die "no working Python 3.11 found (tried python3.11, /root/.pyenv/versions/3.11.7/bin/python3.11); set PYTHON311"
log "using $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# ---- venv -----------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && ! is_py311 "$VENV/bin/python"; then
  log "existing $VENV is not a working Python 3.11 venv: recreating"
  rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"
# keep the venv out of git even without a repo-level .gitignore entry
[[ -f "$VENV/.gitignore" ]] || echo '*' > "$VENV/.gitignore"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip)

# ---- torch: CPU build from local disk, FIRST ------------------------------
find_torch_wheel() {
  local dirs=() d f
  [[ -n "${PIP_FIND_LINKS:-}" ]] && dirs+=($PIP_FIND_LINKS)
  local cfg
  cfg="$("${PIP[@]}" config get global.find-links 2>/dev/null || true)"
  [[ -n "$cfg" ]] && dirs+=($cfg)
  dirs+=(/opt/wheels)
  for d in "${dirs[@]}"; do
    d="${d#file://}"
    [[ -d "$d" ]] || continue
    for f in "$d"/torch-"$TORCH_VERSION"+cpu-cp311-cp311-*"$(uname -m)".whl; do
      [[ -f "$f" ]] && { echo "$f"; return 0; }
    done
  done
  return 1
}

torch_is_cpu() {
  "$VPY" - <<'EOF' 2>/dev/null
import sys, importlib.metadata as md
import torch
bad = [d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-")]
ok = torch.__version__.startswith("2.13.0") and torch.version.cuda is None and not bad
print(f"torch {torch.__version__} cuda={torch.version.cuda} nvidia_pkgs={bad}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

if torch_is_cpu; then
  log "torch $TORCH_VERSION (CPU) already installed"
else
  WHEEL="${TORCH_WHEEL:-$(find_torch_wheel || true)}"
  [[ -n "$WHEEL" && -f "$WHEEL" ]] || die "no local CPU wheel torch-$TORCH_VERSION+cpu for cp311 found (pip find-links, /opt/wheels); refusing to let pip fetch a CUDA build. Set TORCH_WHEEL=/path/to/wheel."
  log "installing torch from $WHEEL (no index, no deps)"
  "${PIP[@]}" install --no-index --no-deps "$WHEEL" >&2
  log "installing torch's own dependencies (torch itself is already satisfied)"
  "${PIP[@]}" install "torch==$TORCH_VERSION" >&2
  torch_is_cpu || die "torch in $VENV is not the CPU build $TORCH_VERSION"
fi

# ---- the peers, fully pinned ----------------------------------------------
CONSTRAINT="$VENV/peer-constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINT"
log "installing pinned peers from $REQ"
"${PIP[@]}" install -q -c "$CONSTRAINT" -r "$REQ" >&2
torch_is_cpu || die "installing the peers replaced torch with a non-CPU build; remove $VENV and retry"

# ---- sanity ---------------------------------------------------------------
command -v g++ >/dev/null || command -v clang++ >/dev/null \
  || log "WARNING: no g++/clang++ on PATH: rltools cannot compile its C++ trainer"
"$VPY" - <<'EOF' || die "import check failed in $VENV"
import sys, importlib.metadata as md, sysconfig, os
import gymnasium, jax, sbx, stable_baselines3  # noqa: F401
for n in ("rltools", "mkl", "mkl-include"):
    md.version(n)
if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
    print("WARNING: Python.h missing: rltools cannot compile", file=sys.stderr)
print("peer venv OK: " + ", ".join(f"{n} {md.version(n)}" for n in
      ("sbx-rl", "stable-baselines3", "gymnasium", "rltools", "mkl", "jax", "torch")), file=sys.stderr)
EOF

echo "$want_stamp" > "$STAMP"
ensure_l2f
log "peer venv ready"
echo "$VENV"
