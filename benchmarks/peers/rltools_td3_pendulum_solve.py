#!/usr/bin/env python3
"""RLtools TD3: time to solve Pendulum-v1. Same as
`rltools_sac_pendulum_solve.py --algo td3` (see that file and README.md)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc
import rltools_sac_pendulum_solve as base

if __name__ == "__main__":
    pc.run_main(base.PEER, "td3_pendulum_solve", lambda argv: base.main(argv, default_algo="td3"))
