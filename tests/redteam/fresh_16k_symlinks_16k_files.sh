#!/bin/bash
# class: runs that disappear as infra (16k symlinks + 16k files: a quadratic diff guard)
# task: shell_hello_file
# mode: fresh
# expect: zero
# REDTEAM_N links and as many files (the suite sets 1024 to stay fast on slow storage such as
# fuse-overlayfs; ROLLOUTS_SLOW=1 runs the full 16384; bench/bench_guard.py times the guards).
N=${REDTEAM_N:-16384}
mkdir -p many && cd many
python3 - "$N" <<'PY'
import os, sys
for i in range(int(sys.argv[1])):
    os.symlink(f"f{i}", f"l{i}")
    with open(f"f{i}", "w") as f:
        f.write(f"{i}\n")
PY
