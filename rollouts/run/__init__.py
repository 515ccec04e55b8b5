"""The runner, split by job (``rollouts.runner.Runner`` composes them):

- :mod:`.outcome`   — a run's outcome as a value, and the one mapping of exceptions to kinds;
- :mod:`.scheduler` — runs at most ``parallel`` at once and at most ``live_sandbox_limit`` per backend;
- :mod:`.manifest`  — builds the manifest and writes it (coalesced, atomically);
- :mod:`.resume`    — the pure resume planner (manifest in, runs to do out);
- :mod:`.retry`     — infra retries through tenacity, waits that a cancel interrupts at once;
- :mod:`.owner`     — ownership labels and the reaper of provably orphaned sandboxes.

One run's life (image → sandbox → workspace → agent → collection → grading) reads top to bottom
in :func:`rollouts.lifecycle.execute_run`.
"""
