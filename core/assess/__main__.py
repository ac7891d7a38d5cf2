"""``python -m core.assess``: see :mod:`core.assess.cli`."""
import sys

from ..progress import cancel_on_sigterm
from .cli import main

cancel_on_sigterm()  # a program of its own: SIGTERM (the plugin's Cancel) cleans up as Ctrl-C does
sys.exit(main())
