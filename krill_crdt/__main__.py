"""``python -m krill_crdt``: the ``krill`` command line."""

import sys

from krill_crdt.cli import main

sys.exit(main())
