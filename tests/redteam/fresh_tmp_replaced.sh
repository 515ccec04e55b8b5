#!/bin/bash
# class: runs that disappear as infra (the harness's temp dir replaced)
# task: shell_hello_file
# mode: fresh
# expect: agent
echo "hello" > greeting.txt  # a wrong answer
rm -rf /tmp && ln -s /proc/self/fd /tmp
