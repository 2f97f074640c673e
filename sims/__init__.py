"""Functional (pure-JAX / MJX) simulators, one robot per subfolder.

Each subfolder has ``env.py`` with a ``*Config`` dataclass (its ``default_config``), the env class
implementing ``robotrl.types.Env``, and, where it makes sense, ``randomize.py``. The registry that
names them lives at the CLI edge (``robotrl/registry.py``), not here.
"""
