#!/usr/bin/env bash
# Create (idempotently) the MuJoCo Playground peer virtualenv: Brax PPO + MuJoCo
# Playground + MJX on the CPU, Python 3.12, in its own env (never the project's deps).
#
# Usage: bash benchmarks/peers/setup_playground_env.sh [--force]
#   env PLAYGROUND_VENV=/path  venv location (default: <repo root>/.bench-venv-playground)
#   env PYTHON312=/path        explicit Python 3.12 (or 3.11) interpreter
# A second call is a no-op (stamp file) unless --force or the pins changed.
# The last line of stdout is the venv path.
#
# Pinned top-level versions (full pin set: playground_requirements.txt):
#   jax/jaxlib 0.9.2, flax 0.12.6, brax 0.14.2, playground 0.2.0,
#   mujoco 3.17.0, mujoco-mjx 3.17.0 (numpy 2.5.5, optax 0.2.8, warp-lang 1.19.0)
# Why: brax 0.14.2 fails on jax 0.10+ (a removed function); playground 0.2.0 wants
# mujoco/mujoco-mjx >= 3.6 and works with 3.17.0 on jax 0.9.2; pin mujoco == mujoco-mjx
# (unpinned, pip takes mujoco 4.0.0). No torch, no CUDA/nvidia packages.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${PLAYGROUND_VENV:-$ROOT/.bench-venv-playground}"
REQ="$HERE/playground_requirements.txt"
STAMP="$VENV/.playground-env-stamp"
SETUP_VERSION="1"   # bump to force a reinstall everywhere

FORCE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup_playground_env.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done

die() { echo "setup_playground_env.sh: ERROR: $*" >&2; exit 1; }
log() { echo "[setup_playground_env] $*" >&2; }

[[ -f "$REQ" ]] || die "missing $REQ"
want_stamp="setup=$SETUP_VERSION req=$(sha256sum "$REQ" | cut -d' ' -f1)"

is_py3_11_or_12() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] not in ((3, 12), (3, 11)))' >/dev/null 2>&1; }

# ---- fast path: already set up -------------------------------------------
if [[ $FORCE == 0 && -f "$STAMP" && -x "$VENV/bin/python" ]] \
   && [[ "$(cat "$STAMP")" == "$want_stamp" ]] \
   && is_py3_11_or_12 "$VENV/bin/python"; then
  log "playground venv already set up (stamp matches); nothing to do"
  echo "$VENV"
  exit 0
fi

# ---- Python 3.12 (3.11 accepted: playground 0.2.0 supports both) -----------
PY=""
for cand in "${PYTHON312:-}" /root/.pyenv/versions/3.12.1/bin/python3.12 python3.12 \
            /usr/bin/python3.12 python3.11 /root/.pyenv/versions/3.11.7/bin/python3.11; do
  [[ -n "$cand" ]] || continue
  if is_py3_11_or_12 "$cand"; then PY="$cand"; break; fi
done
[[ -n "$PY" ]] || die "no working Python 3.12/3.11 found; set PYTHON312"
log "using $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# ---- venv -----------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && ! is_py3_11_or_12 "$VENV/bin/python"; then
  log "existing $VENV is not a working Python 3.12/3.11 venv: recreating"
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

log "installing pinned packages from $REQ (~1.4 GB; 2 min the first time)"
"$VPY" -m pip install -q -r "$REQ" >&2

# ---- sanity ---------------------------------------------------------------
"$VPY" - <<'EOF' || die "import check failed in $VENV"
import sys, importlib.metadata as md
bad = sorted(d.metadata["Name"] for d in md.distributions()
             if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "torch")))
if bad:
    sys.exit(f"unexpected CUDA/torch packages in the venv: {bad}")
want = {"jax": "0.9.2", "jaxlib": "0.9.2", "flax": "0.12.6", "brax": "0.14.2",
        "playground": "0.2.0", "mujoco": "3.17.0", "mujoco-mjx": "3.17.0"}
got = {n: md.version(n) for n in want}
if got != want:
    sys.exit(f"version mismatch: {got} != {want}")
import os
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
from brax.training.agents.ppo import train as _ppo  # noqa: F401
from mujoco_playground import registry, wrapper  # noqa: F401
from mujoco_playground.config import dm_control_suite_params
env = registry.load("CartpoleBalance", config_overrides={"impl": "jax"})
cfg = dm_control_suite_params.brax_ppo_config("CartpoleBalance", "jax")
assert env.observation_size == 5 and env.action_size == 1, (env.observation_size, env.action_size)
print("playground venv OK: " + ", ".join(f"{n} {v}" for n, v in got.items())
      + f"; jax devices {jax.devices()}; CartpoleBalance tuned num_envs={cfg.num_envs}",
      file=sys.stderr)
EOF

echo "$want_stamp" > "$STAMP"
log "playground venv ready"
echo "$VENV"
