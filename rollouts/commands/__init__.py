"""Subcommands of the CLI other than ``run``, one module per group, loaded lazily by :mod:`rollouts.cli`."""
