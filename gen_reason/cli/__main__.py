"""``python -m gen_reason.cli``: the ``genreason`` command."""

import sys

from gen_reason.cli import main

sys.exit(main())
