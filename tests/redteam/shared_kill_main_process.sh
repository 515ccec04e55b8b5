#!/bin/bash
# class: runs that disappear as infra (killing the container's main process)
# task: shell_hello_file
# mode: shared
# expect: agent
kill -9 $(cat /proc/1/task/1/children) 2>/dev/null
sleep 5
