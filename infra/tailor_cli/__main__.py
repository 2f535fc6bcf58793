"""`python -m tailor_cli`: the `tailor` command."""

import sys

from tailor_cli.main import main

sys.exit(main())
