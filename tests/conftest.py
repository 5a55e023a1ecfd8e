"""Puts tests/ on sys.path so that test modules in every folder import the shared helpers
(isa_builds) the same way, whether or not their folder is a package and in any import mode."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
