"""Algorithms: each a module with ``<Name>Config``, ``<Name>State`` and ``make(config, spec)``."""
