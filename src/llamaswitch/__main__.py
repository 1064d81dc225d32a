"""``python -m llamaswitch`` runs the command line."""

import sys

from llamaswitch._cli import main

sys.exit(main())
