"""``python -m core.assess``: see :mod:`core.assess.cli`."""
import sys

from .cli import main

sys.exit(main())
