"""``python -m core.embed``: see :mod:`core.embed.cli`."""
import sys

from .cli import main

sys.exit(main())
