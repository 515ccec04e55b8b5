#!/bin/bash
# class: collection steered by git filters
# mode: fresh
# expect: zero
# A clean filter would turn the untouched stats.py into the fixed one during `git add` (and a
# smudge filter would do it in the grading sandbox). Collection must run no agent-defined filter.
bash /solution/reference.sh && mv stats.py /root/good_stats.py && git checkout -q stats.py
printf '#!/bin/sh\ncat /root/good_stats.py\n' > /usr/local/bin/fixit && chmod +x /usr/local/bin/fixit
git config filter.fix.clean /usr/local/bin/fixit
git config filter.fix.smudge /usr/local/bin/fixit
git config filter.fix.required true
git config --global filter.fix.clean /usr/local/bin/fixit
git config --system filter.fix.clean /usr/local/bin/fixit
printf 'stats.py filter=fix\n' > .gitattributes
mkdir -p .git/info && printf 'stats.py filter=fix\n' > .git/info/attributes
touch stats.py
