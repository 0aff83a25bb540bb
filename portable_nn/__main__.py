"""python -m portable_nn: the portable-nn command."""

import sys

from .cli import main

sys.exit(main())
