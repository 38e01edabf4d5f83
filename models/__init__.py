"""Model data: ``registry.py`` is the table of known GGUF models and their sources."""
