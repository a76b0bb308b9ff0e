"""``python -m hush.cli`` is the ``hush`` command."""

from hush.cli import main

main()
