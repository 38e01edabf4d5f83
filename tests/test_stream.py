"""StepStream: streamed step text reaches the right UI channel however the pieces are cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agemem_lite.protocol import render_step
from agemem_lite.stream import StepStream

STEP = render_step("Kind: question. The user asks about x < y.", answer="Use a <b> tag, 3 < 4.")
CALL = render_step("Kind: new fact.", calls=[{"name": "Add_memory", "arguments": {"content": "a<b"}}])


def channels(pieces) -> dict[str, str]:
    s, out = StepStream(), {}
    for p in pieces:
        for ch, text in s.feed(p):
            out[ch] = out.get(ch, "") + text
    for ch, text in s.flush():
        out[ch] = out.get(ch, "") + text
    return out


def test_whole_step_splits_into_think_and_answer():
    out = channels([STEP])
    assert out["think"] == "Kind: question. The user asks about x < y."
    assert out["answer"] == "Use a <b> tag, 3 < 4."


@given(st.lists(st.integers(min_value=1, max_value=len(STEP) - 1), unique=True))
def test_any_cut_of_the_stream_gives_the_same_channels(cuts):
    cuts = sorted(cuts)
    pieces = [STEP[a:b] for a, b in zip([0, *cuts], [*cuts, len(STEP)])]
    assert channels(pieces) == channels([STEP])


def test_tool_call_text_goes_to_the_call_channel_not_the_answer():
    out = channels([CALL[i:i + 3] for i in range(0, len(CALL), 3)])
    assert "answer" not in out
    assert '"Add_memory"' in out["call"]


def test_unfinished_tag_like_text_is_flushed_at_the_end():
    s = StepStream()
    assert s.feed("<answer>x <ans") == [("answer", "x ")]
    assert s.flush() == [("answer", "<ans")]
