"""Entry point for ``python -m spacetail``."""

from spacetail.cli import main

raise SystemExit(main())
