"""`python -m tests.mutants`: see run.py."""

import sys

from tests.mutants.run import main

raise SystemExit(main(sys.argv[1:]))
