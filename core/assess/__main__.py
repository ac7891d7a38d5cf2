"""``python -m core.assess``: see :mod:`core.assess.cli`."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started, nothing to say but that
    sys.exit(130)

sys.exit(main())
