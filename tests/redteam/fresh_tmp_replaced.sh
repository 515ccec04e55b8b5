#!/bin/bash
# class: runs that disappear as infra (the harness's temp dir replaced)
# mode: fresh
# expect: agent
echo "# edited" >> stats.py
rm -rf /tmp && ln -s /proc/self/fd /tmp
