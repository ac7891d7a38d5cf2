"""``python -m core.models``: see :mod:`core.models.cli`."""
import sys

from .cli import main

sys.exit(main())
