"""radixserve: an LLM serving engine with a radix prefix cache and native kernels."""

import importlib.abc
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


class _TorchBeforeC(importlib.abc.MetaPathFinder):
    """`import radixserve._C` first imports torch: the extension's tensor converters use
    torch's Python types, and without them the first tensor it returns crashes the process.
    Nothing is imported until _C itself is (`import radixserve` stays cheap)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "radixserve._C" and "torch" not in sys.modules:
            import torch  # noqa: F401

        return None  # the normal finders load the module


if not any(isinstance(f, _TorchBeforeC) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchBeforeC())

if TYPE_CHECKING:
    from radixserve.engine.engine import Engine


def __getattr__(name: str) -> Any:
    # Lazy, so that `import radixserve` stays cheap for the HTTP workers and tools.
    if name == "Engine":
        from radixserve.engine.engine import Engine

        return Engine
    raise AttributeError(name)


__all__ = ["Engine", "__version__"]
