#!/bin/bash
# class: privilege drop that fails open (hidden test printed through /proc/self/cwd)
# mode: fresh
# expect: agent
ln -s /proc/self/cwd/tests/test_stats.py leak.txt
ln -s ../../proc/self/root/tests deep_leak
mkdir -p a/b && ln -s ../../deep_leak a/b/chain
