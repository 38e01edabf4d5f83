"""The ``agemem`` command: a thin click group over the library (STYLE §5).

Each subcommand parses options, opens a library object, calls one method and
prints the result. Library errors (``AgememError``) become one line on stderr
and exit code 1; click's own usage errors exit 2.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from ..config import Settings
from ..errors import AgememError


class Context:
    """What every subcommand gets: the resolved settings and output mode."""

    def __init__(self, settings: Settings, as_json: bool):
        self.settings = settings
        self.as_json = as_json

    def emit(self, obj, text: str | None = None) -> None:
        """Print ``obj`` as JSON in --json mode, else ``text`` (or str(obj))."""
        if self.as_json:
            click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
        else:
            click.echo(text if text is not None else str(obj))


pass_ctx = click.make_pass_decorator(Context)


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt   # `kill` unwinds like Ctrl+C: finally blocks close stores and stop servers


class AgememGroup(click.Group):
    """A click group that turns library errors into one readable line."""

    def invoke(self, ctx):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except AgememError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=AgememGroup)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data folder (models, memory.db). Default: $AGEMEM_HOME or the platform's user data dir.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.version_option(package_name="agemem-lite")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """agemem-lite: a private, offline assistant that manages its own memory.

    Example: agemem chat
    """
    try:
        settings = Settings.load(data_dir)
    except AgememError as e:
        raise click.ClickException(str(e)) from None
    ctx.obj = Context(settings, as_json)


def _register() -> None:
    """Attach the subcommand groups (kept in their own modules)."""
    for name in ("models", "memory", "chat", "eval", "train"):
        mod = __import__(f"{__name__}.{name}", fromlist=["COMMANDS"])
        for cmd in mod.COMMANDS:
            main.add_command(cmd)


_register()
