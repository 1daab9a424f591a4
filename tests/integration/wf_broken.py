"""A workflow module whose import ends the process (``sys.exit``): the workflow manager must fail
the run that names it, with the reason, and keep running (tests/integration/test_workflows_engine)."""

import sys

sys.exit(3)
