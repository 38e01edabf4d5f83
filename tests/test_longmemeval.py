"""LongMemEval-format generator and official-JSON loader (agemem_lite.eval.longmemeval)."""

import json
import re
from datetime import datetime

import pytest

from agemem_lite.eval.longmemeval import TYPES, LongMemItem, dump, generate, load_official, parse_date

ITEMS = generate(120, seed=11)


def _of(kind):
    return [it for it in ITEMS if it.kind == kind]


def _date(text):
    """Parsed independently of the module: "2023/05/20 (Sat) 02:21" -> date."""
    return datetime.strptime(text.split(" (")[0], "%Y/%m/%d").date()


def _session_dates(it):
    """Dates of the answer sessions, in haystack order."""
    return [_date(d) for sid, d in zip(it.haystack_session_ids, it.haystack_dates) if sid in it.answer_session_ids]


def _all_text(it):
    return "\n".join(t["content"] for s in it.haystack_sessions for t in s)


def test_same_seed_same_items_other_seed_differs():
    assert generate(30, seed=11) == ITEMS[:30]
    assert [i.question for i in generate(30, seed=12)] != [i.question for i in ITEMS[:30]]


def test_every_question_type_generated_with_unique_ids():
    assert {it.kind for it in ITEMS} == set(TYPES)
    assert all(len(_of(k)) == 20 for k in TYPES)                  # dealt round-robin
    assert len({it.question_id for it in ITEMS}) == len(ITEMS)
    for it in _of("abstention"):
        assert it.question_id.endswith("_abs") and it.question_type in TYPES[:-1]   # official convention
    assert all(not it.question_id.endswith("_abs") for it in ITEMS if it.kind != "abstention")


def test_types_argument_restricts_and_rejects_unknown_names():
    items = generate(4, seed=1, types=["knowledge-update"], n_filler=2)
    assert {it.kind for it in items} == {"knowledge-update"}
    assert all(len(it.haystack_sessions) == 4 for it in items)       # 2 evidence + 2 filler sessions
    with pytest.raises(ValueError, match="single-session-preference"):
        generate(1, seed=1, types=["single-session-preference"])
    with pytest.raises(ValueError, match="n=-1"):
        generate(-1, seed=1)


def test_haystack_is_chronological_and_question_asked_last():
    for it in ITEMS:
        days = [_date(d) for d in it.haystack_dates]
        assert days == sorted(days) and len(set(days)) == len(days)
        assert _date(it.question_date) > days[-1]
        assert len(it.haystack_sessions) == len(it.haystack_dates) == len(it.haystack_session_ids)
        assert set(it.answer_session_ids) <= set(it.haystack_session_ids)
        for s in it.haystack_sessions:
            assert all(t["role"] in ("user", "assistant") and t.get("has_answer", True) is True for t in s)


def test_gold_answer_is_in_evidence_turns_and_not_in_filler():
    kinds = ["single-session-user", "single-session-assistant", "multi-session", "knowledge-update"]
    first = [it for it in _of("temporal-reasoning") if it.question.startswith("Which")]
    for it in [it for k in kinds for it in _of(k)] + first:
        gold, filler = "\n".join(it.gold_sentences()), "\n".join(it.distractor_turns())
        for part in re.split(r", | and ", it.answer) if it.kind == "multi-session" else [it.answer]:
            assert part in gold, (it.question, part)
            assert part not in filler
        marked = {sid for sid, s in zip(it.haystack_session_ids, it.haystack_sessions)
                  if any(t.get("has_answer") for t in s)}
        assert marked == set(it.answer_session_ids)


def test_single_session_assistant_evidence_is_the_assistant_turn():
    for it in _of("single-session-assistant"):
        [turn] = [t for s in it.haystack_sessions for t in s if t.get("has_answer")]
        assert turn["role"] == "assistant" and it.answer in turn["content"]


def test_multi_session_needs_two_or_more_sessions():
    for it in _of("multi-session"):
        assert 2 <= len(it.answer_session_ids) <= 3
        assert len(it.gold_sentences()) == len(it.answer_session_ids)


def test_abstention_asked_about_thing_appears_nowhere():
    for it in _of("abstention"):
        noun = re.search(r"your ([a-z ]+)\.$", it.answer).group(1)
        assert it.answer.startswith("The information provided is not enough")
        assert noun in it.question.lower()
        assert not re.search(rf"\b{noun}\b", _all_text(it), re.I), noun
        assert len(it.gold_sentences()) == 1                      # the fact the question twists


def test_knowledge_update_old_value_precedes_new_value():
    for it in _of("knowledge-update"):
        old_turn, new_turn = it.gold_sentences()
        assert it.old_answer and it.old_answer != it.answer
        assert it.old_answer in old_turn and it.answer not in old_turn
        assert it.answer in new_turn and it.old_answer not in new_turn
        d_old, d_new = _session_dates(it)
        assert d_old < d_new
        assert it.information_turns()[0].endswith(old_turn) and it.information_turns()[1].endswith(new_turn)
    assert all(it.old_answer is None for it in ITEMS if it.kind != "knowledge-update")


def test_temporal_answers_match_session_dates():
    forms = set()
    for it in _of("temporal-reasoning"):
        dates = _session_dates(it)
        if it.question.startswith("How many days passed"):
            forms.add("between")
            expected = (dates[1] - dates[0]).days
        elif it.question.startswith("How many days ago"):
            forms.add("ago")
            expected = (_date(it.question_date) - dates[0]).days
        else:
            forms.add("first")
            a, b = re.fullmatch(r"Which did I visit first, (.+) or (.+)\?", it.question).groups()
            first_turn = it.gold_sentences()[0]                   # gold_sentences is in time order
            assert it.answer in (a, b) and it.answer in first_turn
            assert ({a, b} - {it.answer}).pop() in it.gold_sentences()[1]
            continue
        assert expected > 0
        assert it.answer == f"{expected} day" + ("s" if expected != 1 else "")
    assert forms == {"between", "ago", "first"}


def test_information_turns_are_dated_evidence_in_time_order():
    for it in ITEMS:
        info = it.information_turns()
        assert len(info) == len(it.gold_sentences())
        stamps = [re.match(r"\[([^\]]+)\] (user|assistant): ", line) for line in info]
        assert all(stamps) and all(s.group(1) in it.haystack_dates for s in stamps)
        assert [_date(s.group(1)) for s in stamps] == sorted(_date(s.group(1)) for s in stamps)
        assert it.query() == f"[{it.question_date}] {it.question}"


def test_distractors_are_filler_user_turns_some_look_alike():
    look_alike = 0
    for it in ITEMS:
        filler = [s for sid, s in zip(it.haystack_session_ids, it.haystack_sessions)
                  if sid not in it.answer_session_ids]
        assert len(filler) == 6
        users = [t["content"] for s in filler for t in s if t["role"] == "user"]
        assert [d.split("] user: ", 1)[1] for d in it.distractor_turns()] == users
        look_alike += any(re.match(r"My (friend|colleague|neighbour|old classmate) ", u) for u in users)
    assert look_alike >= 0.8 * len(ITEMS)


def test_round_trip_dump_load(tmp_path):
    path = tmp_path / "items.json"
    dump(ITEMS, path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert list(raw[0])[:9] == ["question_id", "question_type", "question", "answer", "question_date",
                                "haystack_session_ids", "haystack_dates", "haystack_sessions", "answer_session_ids"]
    assert load_official(path) == ITEMS


OFFICIAL = [
    {
        "question_id": "e47becba",
        "question_type": "single-session-user",
        "question": "What degree did I graduate with?",
        "answer": "Business Administration",
        "question_date": "2023/05/30 (Tue) 23:40",
        "haystack_session_ids": ["sharegpt_yywfXbs_0", "answer_280352e9"],
        "haystack_dates": ["2023/05/20 (Sat) 02:21", "2023/05/25 (Thu) 10:00"],
        "haystack_sessions": [
            [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Autumn moon..."}],
            [{"role": "user", "content": "I graduated with a degree in Business Administration.", "has_answer": True},
             {"role": "assistant", "content": "Congratulations!", "has_answer": False}],
        ],
        "answer_session_ids": ["answer_280352e9"],
    },
    {
        "question_id": "gpt4_2f8be40d_abs",
        "question_type": "multi-session",
        "question": "How many weddings did I attend?",
        "answer": 3,                                            # some official answers are numbers
        "question_date": "2023/06/01",
        "haystack_session_ids": ["b", "a"],                    # oracle files are not sorted by date
        "haystack_dates": ["2023/05/02 (Tue) 09:00", "2023/04/01 (Sat) 08:00"],
        "haystack_sessions": [[{"role": "user", "content": "Later."}], [{"role": "user", "content": "Earlier."}]],
        "answer_session_ids": ["a", "b"],
        "some_future_key": {"kept": True},
    },
]


def test_official_file_round_trips_exactly(tmp_path):
    src, out = tmp_path / "oracle.json", tmp_path / "out.json"
    src.write_text(json.dumps(OFFICIAL))
    items = load_official(src)
    dump(items, out)
    assert json.loads(out.read_text(encoding="utf-8")) == OFFICIAL
    assert load_official(out) == items


def test_official_items_expose_turns_in_time_order(tmp_path):
    path = tmp_path / "oracle.json"
    path.write_text(json.dumps(OFFICIAL))
    one, two = load_official(path)
    assert isinstance(one, LongMemItem) and one.kind == "single-session-user" and two.kind == "abstention"
    assert one.gold_sentences() == ["I graduated with a degree in Business Administration."]
    assert one.information_turns() == [
        "[2023/05/25 (Thu) 10:00] user: I graduated with a degree in Business Administration."]
    assert one.distractor_turns() == ["[2023/05/20 (Sat) 02:21] user: Write a haiku."]
    assert two.answer == 3 and two.extra == {"some_future_key": {"kept": True}}
    # nothing marked has_answer: the answer sessions' user turns, sorted by date
    assert two.information_turns() == ["[2023/04/01 (Sat) 08:00] user: Earlier.",
                                       "[2023/05/02 (Tue) 09:00] user: Later."]


def test_parse_date_accepts_official_layouts_and_rejects_others():
    assert parse_date("2023/05/20 (Sat) 02:21") == datetime(2023, 5, 20, 2, 21)
    assert parse_date("2023/05/20") == datetime(2023, 5, 20)
    with pytest.raises(ValueError, match="not a LongMemEval date"):
        parse_date("20 May 2023")


@pytest.mark.parametrize("key", ["question_id", "question_type", "question", "answer", "question_date",
                                 "haystack_session_ids", "haystack_dates", "haystack_sessions",
                                 "answer_session_ids"])
def test_malformed_missing_key_names_item_and_key(tmp_path, key):
    bad = json.loads(json.dumps(OFFICIAL))
    del bad[1][key]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=rf"item 1\b.*'{key}'"):
        load_official(path)


@pytest.mark.parametrize("key, value, message", [
    ("haystack_dates", ["2023/05/20 (Sat) 02:21"], "one length"),
    ("haystack_dates", ["yesterday", "2023/04/01"], "'haystack_dates'.*not a LongMemEval date"),
    ("haystack_sessions", [[{"role": "user"}], []], r"'haystack_sessions'\[0\]"),
    ("answer", None, "'answer'"),
    ("answer_session_ids", "a", "'answer_session_ids'"),
])
def test_malformed_shapes_give_clear_errors(tmp_path, key, value, message):
    bad = json.loads(json.dumps(OFFICIAL))
    bad[0][key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=rf"item 0\b.*{message}"):
        load_official(path)
    path.write_text(json.dumps({"data": OFFICIAL}))
    with pytest.raises(ValueError, match="list"):
        load_official(path)
