"""``python -m spikard_tasks.cli``: the ``spikard-tasks`` command."""

import sys

from .main import main

sys.exit(main())
