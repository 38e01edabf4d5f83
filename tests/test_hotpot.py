"""HotpotQA-format generator and official-JSON loader (agemem_lite.eval.hotpot)."""

import json
import re

import pytest

from agemem_lite.eval.hotpot import HotpotItem, dump, generate, load_official

ITEMS = generate(120, seed=7)


def test_same_seed_same_items_other_seed_differs():
    assert generate(20, seed=7) == ITEMS[:20]
    other = generate(20, seed=8)
    assert [i.question for i in other] != [i.question for i in ITEMS[:20]]


def test_ids_unique_and_both_types_present():
    assert len({i.id for i in ITEMS}) == len(ITEMS)
    assert {i.type for i in ITEMS} == {"bridge", "comparison"}
    assert {i.level for i in ITEMS} <= {"easy", "medium", "hard"}
    assert len({re.sub(r"[A-Z][a-z]+", "X", i.question) for i in ITEMS}) >= 8   # several templates


def test_two_gold_eight_distractors_paragraph_sizes():
    for it in ITEMS:
        assert len(it.context) == 10
        assert len({t for t, _ in it.context}) == 10
        assert len(it.gold_titles) == 2
        assert len(it.distractor_paragraphs()) == 8
        assert all(2 <= len(s) <= 5 for _, s in it.context)


def test_context_order_is_shuffled():
    positions = {[t for t, _ in it.context].index(it.gold_titles[0]) for it in ITEMS}
    assert len(positions) >= 5


def test_supporting_facts_index_gold_sentences():
    for it in ITEMS:
        paras = dict(it.context)
        for title, idx in it.supporting_facts:
            assert title in it.gold_titles
            assert 0 <= idx < len(paras[title])
        assert len(it.gold_sentences()) == 2


def test_bridge_needs_both_paragraphs():
    bridges = [i for i in ITEMS if i.type == "bridge"]
    assert len(bridges) > 20
    for it in bridges:
        a, b = it.gold_titles
        paras = {t: " ".join(s) for t, s in it.context}
        sa, sb = it.gold_sentences()
        assert it.answer in sb                  # the answer is in a supporting sentence
        assert b in sa                          # the bridge entity links A to B
        assert a in it.question and b not in it.question
        assert it.answer not in paras[a]        # A alone does not answer
        assert a not in paras[b]                # B alone does not know the question's entity
        for t, sents in it.distractor_paragraphs():
            text = " ".join(sents)
            assert b not in text
            assert not (a in text and it.answer in text)


def _direction(question):
    if re.search(r"\b(earlier|older|first|shorter)\b", question):
        return min
    assert re.search(r"\b(later|more recently|longer)\b", question), question
    return max


def test_comparison_answer_matches_numbers():
    comps = [i for i in ITEMS if i.type == "comparison"]
    assert len(comps) > 15
    for it in comps:
        a, b = it.gold_titles
        assert it.answer in (a, b)
        assert a in it.question and b in it.question
        nums = {}
        for title, sent in zip((a, b), it.gold_sentences()):
            found = re.findall(r"\d+", sent)
            assert len(found) == 1, sent
            nums[title] = int(found[0])
        assert nums[a] != nums[b]
        assert it.answer == _direction(it.question)(nums, key=nums.get)


def test_distractors_share_entities_with_gold():
    # "related-looking": most items have a distractor naming a gold entity or the answer
    hits = 0
    for it in ITEMS:
        names = set(it.gold_titles) | {it.answer}
        if any(n in " ".join(s) for _, s in it.distractor_paragraphs() for n in names):
            hits += 1
    assert hits >= 0.8 * len(ITEMS)


def test_round_trip_dump_load(tmp_path):
    path = tmp_path / "items.json"
    dump(ITEMS[:30], path)
    raw = json.loads(path.read_text())
    assert set(raw[0]) == {"_id", "question", "answer", "type", "level", "supporting_facts", "context"}
    assert isinstance(raw[0]["context"][0], list) and isinstance(raw[0]["supporting_facts"][0][1], int)
    assert load_official(path) == ITEMS[:30]


OFFICIAL = [
    {
        "_id": "5a8b57f25542995d1e6f1371",
        "answer": "yes",
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
        "context": [
            ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker.", " He was born in 1924."]],
            ["Scott Derrickson", ["Scott Derrickson is an American director.", " He lives in LA."]],
            ["Other", ["Unrelated.", " Still unrelated."]],
        ],
        "type": "comparison",
        "level": "hard",
    },
    {
        "_id": "x2",
        "answer": "Paris",
        "question": "Where?",
        "supporting_facts": [["P", 1], ["P", 7]],       # out-of-range index, kept, skipped by gold_sentences
        "context": [["P", ["One.", " It is in Paris."]]],
    },
]


def test_load_official_hand_written(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(OFFICIAL))
    items = load_official(path)
    assert items[0] == HotpotItem(
        id="5a8b57f25542995d1e6f1371", question=OFFICIAL[0]["question"], answer="yes",
        type="comparison", level="hard",
        context=[(t, s) for t, s in OFFICIAL[0]["context"]],
        supporting_facts=[("Scott Derrickson", 0), ("Ed Wood", 0)])
    assert items[0].gold_titles == ["Scott Derrickson", "Ed Wood"]
    assert items[0].distractor_paragraphs() == [("Other", ["Unrelated.", " Still unrelated."])]
    assert (items[1].type, items[1].level) == ("bridge", "medium")
    assert items[1].gold_sentences() == [" It is in Paris."]


@pytest.mark.parametrize("key", ["_id", "question", "answer", "supporting_facts", "context"])
def test_malformed_names_item_and_key(tmp_path, key):
    bad = json.loads(json.dumps(OFFICIAL))
    del bad[1][key]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=rf"item 1\b.*'{key}'"):
        load_official(path)


def test_malformed_shapes(tmp_path):
    bad = json.loads(json.dumps(OFFICIAL))
    bad[0]["supporting_facts"][1] = ["Ed Wood", "zero"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"item 0\b.*'supporting_facts'"):
        load_official(path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="list"):
        load_official(path)
