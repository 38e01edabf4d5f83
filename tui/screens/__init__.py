"""Screens of the agemem-lite app."""
