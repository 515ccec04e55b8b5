#!/bin/bash
# class: runs that disappear as infra (shadowed timeout makes the pre-grading kill step fail)
# task: shell_hello_file
# mode: shared
# expect: agent
printf '#!/bin/sh\nexit 1\n' > /usr/local/bin/timeout && chmod +x /usr/local/bin/timeout
printf '#!/bin/sh\nexit 1\n' > /usr/local/bin/kill && chmod +x /usr/local/bin/kill
