"""LoCoMo-format loader and sample generator (agemem_lite.eval.locomo)."""

import json
import re
from datetime import datetime

import pytest

from agemem_lite.eval.locomo import CATEGORIES, LocomoSample, Turn, load_official, make_sample, parse_date_time

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]


def _write(tmp_path, samples, name="locomo.json"):
    path = tmp_path / name
    path.write_text(json.dumps(samples))
    return path


def _loaded(tmp_path, seed=3):
    path = tmp_path / "locomo.json"
    make_sample(seed, path)
    [sample] = load_official(path)
    return sample


def test_make_sample_same_seed_same_sample_other_seed_differs(tmp_path):
    assert make_sample(3) == make_sample(3)
    assert make_sample(3) != make_sample(4)
    path = tmp_path / "one.json"
    assert json.loads(json.dumps(make_sample(3, path))) == json.loads(path.read_text(encoding="utf-8"))[0]


def test_make_sample_writes_the_official_layout(tmp_path):
    path = tmp_path / "locomo.json"
    make_sample(5, path)
    [raw] = json.loads(path.read_text(encoding="utf-8"))
    assert set(raw) == {"sample_id", "conversation", "qa", "event_summary", "observation", "session_summary"}
    conv = raw["conversation"]
    assert {"speaker_a", "speaker_b"} <= set(conv)
    sessions = sorted(int(m.group(1)) for k in conv if (m := re.fullmatch(r"session_(\d+)", k)))
    assert sessions == [1, 2, 3, 4]
    for n in sessions:
        assert re.fullmatch(r"\d{1,2}:\d{2} [ap]m on \d{1,2} [A-Z][a-z]+, \d{4}", conv[f"session_{n}_date_time"])
        turns = conv[f"session_{n}"]
        assert [t["dia_id"] for t in turns] == [f"D{n}:{k}" for k in range(1, len(turns) + 1)]
        assert all(set(t) == {"speaker", "dia_id", "text"} for t in turns)
        speakers = [t["speaker"] for t in turns]
        assert set(speakers) == {conv["speaker_a"], conv["speaker_b"]}
        assert all(x != y for x, y in zip(speakers, speakers[1:]))          # they take turns
    assert {q["category"] for q in raw["qa"]} == set(CATEGORIES)
    for q in raw["qa"]:
        assert ("adversarial_answer" in q) == (q["category"] == 5) and ("answer" in q) != (q["category"] == 5)


def test_sessions_in_order_with_dates_and_turns(tmp_path):
    s = _loaded(tmp_path)
    assert isinstance(s, LocomoSample) and s.sample_id == "conv-3"
    assert [x.index for x in s.sessions] == [1, 2, 3, 4]
    assert [x.when for x in s.sessions] == sorted(x.when for x in s.sessions)
    assert all(isinstance(t, Turn) and t.dia_id.startswith(f"D{x.index}:") for x in s.sessions for t in x.turns)
    info = s.information_turns()
    assert len(info) == sum(len(x.turns) for x in s.sessions)
    first = s.sessions[0]
    assert info[0] == f"[{first.date_time}] {first.turns[0].speaker}: {first.turns[0].text}"


def test_qa_answers_are_in_their_evidence_turns(tmp_path):
    s = _loaded(tmp_path)
    for qa in s.qa:
        assert len(qa.evidence_text) == len(qa.evidence) >= 1
        assert qa.evidence_text == [s.turn(i).text for i in qa.evidence]
        text = " ".join(qa.evidence_text)
        if qa.category in (1, 4):                               # multi-hop answers are comma-separated
            assert all(part in text for part in str(qa.answer).split(", "))
        if qa.category == 1:
            assert len({i.split(":")[0] for i in qa.evidence}) == 2      # two sessions
        if qa.category == 5:
            assert qa.answer is None and qa.adversarial_answer in text and qa.category_name == "adversarial"


def test_temporal_answer_is_the_evidence_session_date(tmp_path):
    s = _loaded(tmp_path)
    [qa] = [q for q in s.qa if q.category == 2]
    session = int(qa.evidence[0].split(":")[0][1:])
    stamp = [x.date_time for x in s.sessions if x.index == session][0]
    day, month, year = re.search(r"on (\d+) (\w+), (\d{4})$", stamp).groups()    # recomputed from the string
    assert qa.answer == f"{day} {month} {year}" and month in _MONTHS


def test_parse_date_time_reads_locomo_times():
    assert parse_date_time("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56)
    assert parse_date_time("12:09 am on 13 September, 2023") == datetime(2023, 9, 13, 0, 9)
    assert parse_date_time("12:30 pm on 1 January, 2024") == datetime(2024, 1, 1, 12, 30)
    with pytest.raises(ValueError, match="not a LoCoMo session time"):
        parse_date_time("2023/05/08")


def test_loader_tolerates_optional_keys_and_official_quirks(tmp_path):
    raw = make_sample(7)
    conv = raw["conversation"]
    conv["session_10_date_time"] = "9:00 am on 1 December, 2025"          # numeric, not string, order
    conv["session_10"] = [{"speaker": conv["speaker_a"], "dia_id": "D10:1", "text": "Look at this!",
                           "img_url": ["photo.jpg"], "blip_caption": "a photo of a cat", "query": "cat"}]
    raw["qa"].append({"question": "What did she show?", "answer": 2022, "category": 2,
                      "evidence": ["D10:1; D1:1", "D99:9"]})         # joined ids, a missing turn
    raw["qa"].append({"question": "No evidence key?", "answer": "fine", "category": 3})
    raw["observation"]["session_10_observation"] = {conv["speaker_a"]: [["saw a cat", "D10:1"]]}
    [s] = load_official(_write(tmp_path, [raw]))
    assert [x.index for x in s.sessions] == [1, 2, 3, 4, 10]
    assert s.turn("D10:1") == Turn(conv["speaker_a"], "D10:1", "Look at this!")
    quirky, bare = s.qa[-2:]
    assert quirky.answer == 2022 and quirky.evidence == ["D10:1; D1:1", "D99:9"]
    assert quirky.evidence_text == ["Look at this!", conv["session_1"][0]["text"]]
    assert bare.evidence == [] and bare.evidence_text == [] and bare.category_name == "open-domain"


def _broken(path_dir, mutate):
    raw = make_sample(2)
    mutate(raw)
    return _write(path_dir, [make_sample(1), raw], "bad.json")


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("sample_id"), r"sample 1: missing key 'sample_id'"),
    (lambda r: r.pop("conversation"), r"sample 1: missing key 'conversation'"),
    (lambda r: r.pop("qa"), r"sample 1: missing key 'qa'"),
    (lambda r: r["conversation"].pop("speaker_b"), r"sample 1 \(conv-2\).*'speaker_b'"),
    (lambda r: r["conversation"].pop("session_2_date_time"), r"sample 1 \(conv-2\).*'session_2_date_time'"),
    (lambda r: r["conversation"]["session_3"][0].pop("text"), r"sample 1 \(conv-2\): 'session_3'\[0\].*'text'"),
    (lambda r: r["qa"][0].pop("category"), r"sample 1 \(conv-2\): 'qa'\[0\].*'category'"),
    (lambda r: r["qa"][1].pop("answer"), r"'qa'\[1\].*'answer'"),
    (lambda r: r["qa"][0].update(evidence="D1:3"), r"'qa'\[0\].*'evidence'"),
])
def test_malformed_file_names_sample_and_key(tmp_path, mutate, message):
    with pytest.raises(ValueError, match=message):
        load_official(_broken(tmp_path, mutate))


def test_malformed_top_level_is_not_a_list(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON list of samples"):
        load_official(_write(tmp_path, make_sample(1)))
