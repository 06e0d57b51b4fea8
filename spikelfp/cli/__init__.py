"""The ``spikelfp`` command line: ``train``, ``eval``, ``export``, ``info``, ``demo``, ``explain``.

Run ``spikelfp COMMAND --help`` for the options of each command; ``docs/cli.md`` has examples.
Bad input (an unknown choice, a missing data folder, an unreadable checkpoint, a resume with
different settings) prints one ``spikelfp COMMAND: error: ...`` line on stderr and exits with
code 2; a runtime failure (divergence, a failed write) prints one such line and exits with 1.

The CLI is the top layer of the package (``docs/architecture.md``): each command is a module
here (``spikelfp/cli/train.py``, ...) with ``add_parser(sub)`` and ``run(args, argv)``, built on
the library (:mod:`spikelfp.training`, :mod:`spikelfp.hw_export`, ...), which never imports it.

>>> from spikelfp.cli import main
>>> main(["info"])  # doctest: +SKIP
spikelfp info: error: give a CHECKPOINT (checkpoint.pt or its run folder), or --models
2
"""

from ._common import EXIT_USAGE, UsageError
from ._main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "EXIT_USAGE", "UsageError", "build_parser", "main"]
