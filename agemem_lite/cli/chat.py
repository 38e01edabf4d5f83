"""``agemem chat`` (the Textual app; ``--plain`` for a line REPL) and ``agemem ask`` (one turn)."""

from __future__ import annotations

import click

from ..assistant import open_assistant
from ..memory.sessions import describe_operation
from ..prompts import addressed_to_user
from ..records import Step, Turn
from . import pass_ctx
from .models import _progress_bar


_MARK = {"Add_memory": "+", "Update_memory": "~", "Delete_memory": "-", "Retrieve_memory": "?"}


def describe(result: dict) -> str:
    """One line for a tool result, as the user should see it."""
    mark = "!" if not result["ok"] else _MARK.get(result["name"], "*")
    return f"  {mark} {describe_operation(result)}"


def _settings_overrides(ctx, policy, namespace, temperature, seed, max_steps) -> None:
    s = ctx.settings
    for key, value in (("policy", policy), ("namespace", namespace), ("temperature", temperature),
                       ("seed", seed), ("max_steps_per_turn", max_steps)):
        if value is not None:
            setattr(s, key, value)
    s.__post_init__()  # re-check cross-field rules


def _common(f):
    f = click.option("--max-steps", type=click.IntRange(1, 50), default=None, help="Step limit per turn.")(f)
    f = click.option("--seed", type=int, default=None, help="Sampling seed.")(f)
    f = click.option("--temperature", type=click.FloatRange(0, 2), default=None, help="0 = greedy.")(f)
    f = click.option("--namespace", "-n", default=None, help="Memory namespace (profile).")(f)
    f = click.option("--policy", "-m", default=None, help="Policy model name (see `agemem models list`).")(f)
    return f


def _open(ctx):
    with _progress_bar("preparing models (first run only)") as progress:
        return open_assistant(ctx.settings, progress=progress)


@click.command("ask")
@click.argument("message")
@_common
@pass_ctx
def ask(ctx, message, policy, namespace, temperature, seed, max_steps) -> None:
    """Run one turn: print the answer and the memory operations it made.

    Example: agemem ask "My sister's birthday is on March 14."
    """
    _settings_overrides(ctx, policy, namespace, temperature, seed, max_steps)
    with _open(ctx) as a:
        turn = a.agent.turn(message)
    if turn.answer is not None:
        turn.answer = addressed_to_user(turn.answer)
    if ctx.as_json:
        ctx.emit({"policy": ctx.settings.policy, **turn.to_dict(), "operations": turn.operations})
        return
    for r in turn.operations:
        click.echo(describe(r), err=True)
    click.echo(turn.answer if turn.answer is not None else "(no answer within the step limit)")


@click.command("chat")
@_common
@click.option("--resume", "resume", default=None, metavar="ID|last",
              help="Continue a saved session (its id from the session list, or 'last').")
@click.option("--plain", is_flag=True, help="A plain line-by-line chat instead of the full-screen app "
              "(also used when the terminal is not interactive).")
@pass_ctx
def chat(ctx, policy, namespace, temperature, seed, max_steps, resume, plain) -> None:
    """Chat with the assistant and watch (and steer) what it remembers.

    Opens the full-screen app: streamed replies, a memory activity pane, a
    memory browser (F2), sessions (F3), models (F4), approval mode (F5).
    Everything runs on this machine; no API key, no network.

    Example: agemem chat --namespace work
    """
    import sys

    _settings_overrides(ctx, policy, namespace, temperature, seed, max_steps)
    resume_id = _resume_id(ctx, resume)
    if plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        _plain_chat(ctx, resume_id)
        return
    from tui import run

    run(ctx.settings, resume=resume_id)


def _resume_id(ctx, resume: str | None) -> int | None:
    """``--resume`` as a session id; 'last' is the namespace's most recent session."""
    if resume is None:
        return None
    if resume == "last":
        from ..assistant import open_store
        from ..memory.sessions import SessionLog

        with open_store(ctx.settings) as store:
            sessions = SessionLog(store).list(ctx.settings.namespace, limit=1)
        if not sessions:
            raise click.BadParameter(f"no saved session in namespace {ctx.settings.namespace!r}",
                                     param_hint="--resume")
        return sessions[0].id
    if not resume.isdecimal():
        raise click.BadParameter(f"{resume!r} is not a session id or 'last'", param_hint="--resume")
    return int(resume)


def _plain_chat(ctx, resume_id: int | None) -> None:
    from ..chat import ChatSession

    with _open(ctx) as a:
        s = ctx.settings
        session = ChatSession(a, s)
        if resume_id is not None:
            for t in session.resume(resume_id):
                click.echo(f"you> {t.user}")
                click.echo(f"assistant> {t.answer if not t.cancelled else '(cancelled)'}")
        judge = f" · relevance check {s.relevance_judge}" if s.relevance_judge else ""
        click.echo(f"agemem-lite · policy {s.policy} · embedder {s.embedder}{judge} · namespace {s.namespace} · "
                   f"{a.store.count(s.namespace)} memories · data {s.data_dir}")
        click.echo("Type a message. /memories lists memories, /exit quits.")
        while True:
            try:
                text = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
            except (EOFError, click.Abort):
                click.echo()
                break
            text = text.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/memories":
                for m in a.store.list(s.namespace, limit=50):
                    click.echo(f"  {m.id}: {m.content}")
                continue

            def on_step(step: Step) -> None:
                for r in step.results:
                    click.secho(describe(r), fg="cyan" if r["ok"] else "yellow")

            turn: Turn = session.send(text, on_step=on_step)
            click.secho(f"assistant> {turn.answer or '(no answer within the step limit)'}", bold=True)
            click.secho(f"  [context {a.agent.context.tokens}/{s.context_budget} tokens]", dim=True)


COMMANDS = [chat, ask]
