"""``python -m gen_reason`` runs the command line."""

import sys

from gen_reason.cli import main

sys.exit(main())
