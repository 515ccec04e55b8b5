#!/bin/bash
# class: runs that disappear as infra (shadowed timeout / bash for the harness's commands)
# mode: fresh
# expect: agent
echo "# edited" >> stats.py
printf '#!/bin/sh\nexit 0\n' > /usr/local/bin/timeout
printf '#!/bin/sh\necho rc=0\nexit 0\n' > /usr/local/bin/bash
chmod +x /usr/local/bin/timeout /usr/local/bin/bash
