"""``python -m promptbert.cli ...``: the same as the ``promptbert`` command."""

import sys

from .main import main

sys.exit(main())
