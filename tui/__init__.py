"""The Textual app behind ``agemem chat``: a private assistant whose memory you can see and steer."""

from .app import AgememApp, make_app, run

__all__ = ["AgememApp", "make_app", "run"]
