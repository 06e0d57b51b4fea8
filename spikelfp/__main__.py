"""``python -m spikelfp``: the ``spikelfp`` command line (see ``spikelfp --help``)."""

import sys

from spikelfp.cli import main

if __name__ == "__main__":
    sys.exit(main())
