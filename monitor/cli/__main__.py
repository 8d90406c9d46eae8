"""``python -m monitor.cli`` runs the touchpoint command line, like ``python -m monitor``."""

from monitor.cli import main

main()
