"""Allow `python -m tokenkeep`."""

from tokenkeep.cli import main

main()
