"""agemem-lite: offline Agentic Memory — a local LLM that manages its own long-term
memory (SQLite + sqlite-vec) and short-term memory (the context) through six tools.

Public API::

    from agemem_lite import Settings, open_assistant
    with open_assistant(Settings.load()) as a:
        print(a.agent.turn("My sister's birthday is on March 14.").answer)
"""

from importlib.metadata import PackageNotFoundError, version

from .agent import Agent
from .assistant import Assistant, open_assistant
from .config import Settings
from .errors import (AgememError, ConfigError, MemoryNotFound, ModelFileError, StoreError,
                     ToolCallError)
from .memory.store import Hit, Memory, MemoryStore

try:
    __version__ = version("agemem-lite")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Agent", "Assistant", "open_assistant", "Settings", "MemoryStore", "Memory", "Hit",
    "AgememError", "ConfigError", "MemoryNotFound", "ModelFileError", "StoreError", "ToolCallError",
    "__version__",
]
