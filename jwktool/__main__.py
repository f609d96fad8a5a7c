"""``python -m jwktool``."""

from .cli import main

main()
