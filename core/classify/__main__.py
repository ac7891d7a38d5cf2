"""``python -m core.classify``: see :mod:`core.classify.cli`."""
import sys

from .cli import main

sys.exit(main())
