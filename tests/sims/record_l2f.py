"""Records l2f's one-step results for ``test_one_step_matches_l2f`` (needs the peer venv with
l2f: ``bash benchmarks/peers/setup_peer_env.sh --with-l2f``).

Run: ``python -m tests.sims.record_l2f``.
"""

import json
import subprocess
from pathlib import Path

from benchmarks.quadrotor_vs_l2f import compare, l2f_next_states, parity_cases

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "data" / "l2f_one_step.json"


def main() -> None:
    peer = str(ROOT / ".bench-venv" / "bin" / "python")
    version = subprocess.run(
        [peer, "-c", "import importlib.metadata as m; print(m.version('l2f'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cases, ours = parity_cases()
    theirs = l2f_next_states(peer, cases)
    source = f"l2f {version} (pip, peer venv), benchmarks/peers/l2f_steps.py --parity"
    OUT.write_text(json.dumps({"source": source, "cases": cases, "next_states": theirs}))
    print(f"wrote {OUT}; max |robotrl - l2f|: {compare(ours, theirs)}")


if __name__ == "__main__":
    main()
