"""The exception hierarchy (STYLE §4).

Library code raises ``AgememError`` subclasses; ``cli`` turns them into one
line. ``ToolCallError`` is for the model: ``memory.tools.dispatch`` catches it
and returns its message as the tool result, so it never escapes ``agent.py``.
"""


class AgememError(Exception):
    """Base class of every error agemem-lite raises on purpose."""


class MemoryNotFound(AgememError):
    """No memory with that id exists in this namespace."""


class StoreError(AgememError):
    """The memory database cannot be opened, migrated or written."""


class ModelFileError(AgememError):
    """A model file is missing, incomplete, corrupt or has the wrong checksum."""


class ConfigError(AgememError):
    """A setting or configuration file is invalid."""


class ToolCallError(AgememError):
    """A tool call from the model is invalid; the message goes back to the model."""
