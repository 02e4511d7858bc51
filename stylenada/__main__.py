"""``python -m stylenada``: the command line (same as the ``stylenada`` script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
