"""``python -m monitor`` runs the touchpoint command line."""

from monitor.cli import main

main()
