"""``eval-rollouts view``: a local, read-only web viewer of rollouts, runs and trajectories.

Modules: :mod:`~rollouts.view.data` (cached read-only access to the data directory),
:mod:`~rollouts.view.trajectory` (every trajectory format → one step list),
:mod:`~rollouts.view.app` (Starlette routes, Jinja2 templates, security headers),
:mod:`~rollouts.view.server` (uvicorn on localhost; ``--allow-remote`` for anything else).
Templates and static files ship as package data (no CDN; works offline).
"""
