"""robotrl: JAX reinforcement learning for robots and continuous control.

The core: contracts (``robotrl.types``), functional envs and wrappers (``robotrl.envs``), networks
(``robotrl.nets``), buffers, algorithms (``robotrl.algos``), training loops (``robotrl.train``),
runs and checkpoints (``robotrl.runs``), and the CLI (``robotrl.cli``).
"""

__version__ = "0.1.0"
