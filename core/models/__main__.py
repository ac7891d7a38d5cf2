"""``python -m core.models``: see :mod:`core.models.cli`."""
import sys

from ..progress import cancel_on_sigterm

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started, nothing to say but that
    sys.exit(130)

cancel_on_sigterm()  # a program of its own: SIGTERM (the plugin's Cancel) cleans up as Ctrl-C does
sys.exit(main())
