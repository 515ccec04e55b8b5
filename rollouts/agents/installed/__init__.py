"""Installed agents: third-party agent CLIs from PyPI wheels, run inside the sandbox.

``base.py`` is the seam (one module per agent + one line in ``rollouts/agents/__init__.py``),
``layer.py`` downloads the wheels once and keeps the agent's files in a read-only Docker volume.
"""
