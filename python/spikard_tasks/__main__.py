"""``python -m spikard_tasks``: the ``spikard-tasks`` command."""

import sys

from .cli.main import main

sys.exit(main())
