"""Unit tests of the kernel package (python/kiln_kernel) without an engine."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
