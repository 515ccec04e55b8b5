#!/bin/bash
# class: privilege drop that fails open (module nobody cannot read)
# mode: fresh
# expect: agent
# The module is a link to a file only root can read: the untrusted runner must refuse (integrity
# error), never run it as root.
rm stats.py && ln -s /root/.profile stats.py
