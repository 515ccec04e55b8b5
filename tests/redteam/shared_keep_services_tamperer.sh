#!/bin/bash
# class: keep-services residual risk (documented: label agent-controlled)
# mode: shared
# stop: agent
# expect: limitation
# A detached daemon survives a keep-services stop by design (the task's deliverable may be a
# running server): it can rewrite the tests while they run. Such tasks are labelled
# agent-controlled; this attack documents that the label is earned.
setsid nohup bash -c 'while :; do
  [ -d /tests ] && printf "def test_ok():\n    pass\n" > /tests/test_stats.py
  sleep 0.005
done' >/dev/null 2>&1 < /dev/null &
disown
sleep 0.3
