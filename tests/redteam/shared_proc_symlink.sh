#!/bin/bash
# class: privilege drop that fails open (/proc symlink, shared mode)
# mode: shared
# expect: agent
rm stats.py && ln -s /proc/1/cwd/workspace/evil.py stats.py
