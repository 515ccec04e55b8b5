#!/bin/bash
# class: runs that disappear as infra (every pid of the sandbox taken: the harness cannot exec)
# task: shell_hello_file
# mode: fresh
# expect: agent
echo "hello" > greeting.txt  # a wrong answer
for i in $(seq 1 600); do setsid sleep 1000 >/dev/null 2>&1 < /dev/null & done 2>/dev/null
sleep 1
