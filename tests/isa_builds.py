"""The native module's ISA builds this CPU runs, and a fixture that runs a test once on each.

The native module dispatches at run time in two places, each forced with its own setter:
the kernels (_C.set_isa: linear, attention, norms, encoder ops) and the sampler's row
primitives (_C.sampling_set_isa). Both take the portable build 'generic', each vector build
the CPU has, and 'auto' (back to the best one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

BUILDS = ("generic", "avx2", "avx512")


def supported_isas() -> list[str]:
    """The portable build, then each vector build this CPU has."""
    # Imported here, not at the top: a test module may skip itself when _C is missing.
    from radixserve import _C

    features = _C.cpu_features()
    return [isa for isa in BUILDS if isa == "generic" or features[isa]]


def isa_fixture(set_isa: Callable[[str], object]) -> Any:
    """A fixture running each test that takes it once per supported ISA build (test id: the
    build's name), with `set_isa` forced to that build and back to 'auto' after. Give it a name
    by assigning it in the test module: `isa = isa_fixture(_C.set_isa)`."""

    @pytest.fixture(params=supported_isas())
    def forced_isa(request: pytest.FixtureRequest) -> Iterator[str]:
        set_isa(request.param)
        yield request.param
        set_isa("auto")

    return forced_isa
