"""``python -m engine`` = ``dragonpbx``."""

import sys

from engine.cli import main

sys.exit(main())
