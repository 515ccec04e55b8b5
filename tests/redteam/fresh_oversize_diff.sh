#!/bin/bash
# class: collection (an over-size diff must be an explicit agent error naming size and cap)
# task: shell_hello_file
# mode: fresh
# expect: agent
yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c 34000000 > big.txt
