"""Widgets of the agemem-lite app (each with its Message classes nested inside it)."""
