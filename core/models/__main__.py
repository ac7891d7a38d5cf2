"""``python -m core.models``: see :mod:`core.models.cli`."""
import sys

from ..progress import cancel_on_sigterm
from .cli import main

cancel_on_sigterm()  # a program of its own: SIGTERM (the plugin's Cancel) cleans up as Ctrl-C does
sys.exit(main())
