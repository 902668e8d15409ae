"""``python -m platformdb.cli``."""

from platformdb.cli import main

main()
