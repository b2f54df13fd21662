"""`python -m lft_helpers.bench IN OUT`: one memory probe, in a process of its own."""

import sys

from .memory import main_probe

sys.exit(main_probe(sys.argv[1:]))
