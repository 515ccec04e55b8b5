#!/bin/bash
# class: collection that ignores a failing git add
# task: shell_hello_file
# mode: fresh
# expect: agent
echo "hello" > greeting.txt  # a wrong answer
mkdir -p sub && git -C sub init -q
