"""radixserve: an LLM serving engine with a radix prefix cache and native kernels."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from radixserve.engine.engine import Engine


def __getattr__(name: str) -> Any:
    # Lazy, so that `import radixserve` stays cheap for the HTTP workers and tools.
    if name == "Engine":
        from radixserve.engine.engine import Engine

        return Engine
    raise AttributeError(name)


__all__ = ["Engine", "__version__"]
