"""``python -m attnzoo``: the same command line as the ``attnzoo`` script."""

from attnzoo.cli import main

main()
