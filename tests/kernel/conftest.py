"""Unit tests of the kernel package (crates/kiln-compute/python/kiln_kernel) without an engine."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "crates", "kiln-compute", "python"))
