#!/bin/bash
# class: runs that disappear as infra (killing the container's main process)
# task: shell_hello_file
# mode: fresh
# expect: agent
echo "hello" > greeting.txt  # a wrong answer
kill -9 $(cat /proc/1/task/1/children) 2>/dev/null
sleep 5
