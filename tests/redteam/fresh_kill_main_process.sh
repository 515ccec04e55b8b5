#!/bin/bash
# class: runs that disappear as infra (killing the container's main process)
# mode: fresh
# expect: agent
echo "# edited" >> stats.py
kill -9 $(cat /proc/1/task/1/children) 2>/dev/null
sleep 5
