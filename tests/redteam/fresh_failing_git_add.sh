#!/bin/bash
# class: collection that ignores a failing git add
# mode: fresh
# expect: agent
echo "# edited" >> stats.py
mkdir -p sub && git -C sub init -q
