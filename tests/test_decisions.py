"""The protocol decision set (agemem_lite.decisions): labels, split hygiene, serving format,
oracle, scoring, and one smoke run of the real SmolLM2 policy."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from agemem_lite import decisions as D
from agemem_lite import prompts
from agemem_lite.cli import main
from agemem_lite.memory.tools import grammar_schemas
from agemem_lite.protocol import parse_step


@pytest.fixture(scope="module")
def train():
    return D.generate(350, 0, "train")


@pytest.fixture(scope="module")
def heldout():
    return D.generate(350, 0, "heldout")


def hist_tokens(item) -> int:
    return sum(D.est_tokens(m["content"]) for m in item.history)


def _alt(*pools: str) -> str:
    return "(?:" + "|".join(re.escape(v) for p in pools for sp in ("train", "heldout") for v in D.POOLS[p][sp]) + ")"


_SLOT = {"species": _alt("species"), "rel": "(?:sister|brother)", "name": r"\w+"}
_VALUE = {"job": _alt("job"), "hobby": _alt("hobby"), "diet": _alt("diet"), "food": _alt("food"),
          "gym": _alt("gym"), "language": _alt("language"), "pet": r"\w+", "partner": r"\w+",
          "doctor": r"\w+", "birthday": r"\w+ \d+"}


def about(fact: str, content: str) -> bool:
    """Is this memory sentence of that fact type? (Its template with the slots as patterns.)"""
    pattern = re.escape(D.FACTS[fact].sentence)
    for slot, pat in {**_SLOT, "v": _VALUE.get(fact, ".+")}.items():
        pattern = pattern.replace(re.escape("{" + slot + "}"), pat)
    return re.fullmatch(pattern, content) is not None


def stored_in_history(item) -> list[str]:
    """Contents of the Add_memory calls in the item's earlier turns."""
    out = []
    for m in item.history:
        if m["role"] == "assistant":
            out += [c.arguments["content"] for c in parse_step(m["content"]).calls if c.name == "Add_memory"]
    return out


# -- labels -------------------------------------------------------------------------------------

def test_hand_checked_generated_cases():
    """Items 1 (update), 2 (delete) and 0 (add) of train seed 0, read and checked by hand."""
    add, upd, dele = D.generate(3, 0, "train")
    assert (add.label, add.user) == ("add", "By the way, my sister Meixzaeth lives in Durnskothmere.")
    assert add.shown == [("mem_39", "The user's brother Kioriorn lives in Fumpouxwick.")]   # another sibling
    assert add.gold == "The user's sister Meixzaeth lives in Durnskothmere." and add.target_id is None
    assert upd.user == "Update: my sister Boxsku moved from Fymzhaesmere to Guxrouthmere."
    assert upd.label == "update" and dict(upd.shown)[upd.target_id] == "The user's sister Boxsku lives in Fymzhaesmere."
    assert upd.gold == "The user's sister Boxsku lives in Guxrouthmere."
    assert (add.value, upd.value) == ("Durnskothmere", "Guxrouthmere")   # what the stored content must keep
    assert dele.user == "I gave up on Greek." and dele.label == "delete"
    assert dict(dele.shown)[dele.target_id] == "The user is learning Greek." and len(dele.shown) == 2


def test_labels_follow_what_is_shown(train, heldout):
    for it in train + heldout:
        ids = [m for m, _ in it.shown]
        assert len(ids) == len(set(ids)) and all(m.startswith("mem_") and 1 <= int(m[4:]) <= 40 for m in ids)
        contents = dict(it.shown)
        same_type = [c for c in contents.values() if it.fact and about(it.fact, c)]
        earlier = stored_in_history(it)
        if it.label in ("update", "delete"):
            target = contents[it.target_id]
            assert about(it.fact, target) and same_type == [target]
            if it.label == "update":    # the new value replaces the old one
                assert it.gold != target and about(it.fact, it.gold)
            else:
                assert it.gold == target
        elif it.label == "add":
            assert about(it.fact, it.gold) and it.gold not in contents.values()
            assert not any(about(it.fact, c) for c in earlier)
            if it.fact != "sibling":
                assert same_type == []
            else:   # another sibling's memory may be shown, never this sibling's
                name = it.gold.split()[3]
                assert all(name not in c for c in same_type)
        elif it.label == "retrieve":
            if it.fact == "sibling":    # a sibling memory may be shown, never one about the asked relation
                rel = "sister" if "sister" in it.user else "brother"
                assert all(rel not in c for c in same_type)
            else:
                assert same_type == []
            assert not any(about(it.fact, c) for c in earlier)
        elif it.label == "answer" and it.basis == "memory":
            assert about(it.fact, contents[it.target_id]) and same_type == [contents[it.target_id]]
        elif it.label == "answer" and it.basis == "history":
            assert same_type == [] and [c for c in earlier if about(it.fact, c)]
        elif it.label == "answer":
            assert it.basis in ("chat", "general") and it.fact == ""
    assert Counter(it.basis for it in train if it.label == "answer").keys() == {"memory", "history", "chat", "general"}


def test_long_contexts_only_for_filter_and_summary(train, heldout):
    for it in train + heldout:
        if it.label in ("filter", "summary"):
            assert 0.5 * it.budget <= hist_tokens(it) <= 0.95 * it.budget
            mentions = it.basis.lower() in it.user.lower()
            assert mentions == (it.label == "summary")     # the one cue that separates them
            assert sum(it.basis in m["content"] for m in it.history if m["role"] == "user") >= 5
        else:
            assert hist_tokens(it) < 0.1 * it.budget


def test_natural_set_is_small_hand_checked_and_covers_every_class():
    items = D.natural_items()
    assert 20 <= len(items) <= 32 and {it.label for it in items} == set(D.CLASSES)
    assert all(it.split == "natural" for it in items) and len({it.id for it in items}) == len(items)
    for it in items:
        if it.label in ("update", "delete") or (it.label == "answer" and it.basis == "memory"):
            assert it.target_id in dict(it.shown)
        assert (hist_tokens(it) >= 0.5 * it.budget) == (it.label in ("filter", "summary"))



# -- variants: a shared word, a search that found only other things --------------------------------

@pytest.fixture(scope="module")
def variants():
    return {sp: D.generate(160, 0, sp, classes=tuple(D.VARIANTS)) for sp in ("train", "heldout")}


def hits_of(item) -> list[tuple[str, str]]:
    """The memories the item's search listed (its tool result's "[id] content" lines)."""
    return re.findall(r"^\[(mem_\d+)\] (.+)$", item.after[-1]["content"], re.M)


def test_hand_checked_variant_cases():
    """Held-out seed 0, items 0 (add_shared) and 1 (answer_unknown), read and checked by hand."""
    add, unk = D.generate(2, 0, "heldout", classes=tuple(D.VARIANTS))
    assert add.user == "My sister Quothrix just relocated to Nisowick from Ryntoxvale. Please keep that in mind."
    assert add.shown == [("mem_7", "The user lives in Ryntoxvale.")]     # shares the old town, not the fact
    assert (add.label, add.target_id, add.gold) == ("add", None, "The user's sister Quothrix lives in Nisowick.")
    assert add.value == "Nisowick" and add.after == []
    assert (unk.label, unk.basis, unk.user) == ("answer", "unknown", "Who is my partner? I can't remember.")
    [call] = parse_step(unk.after[0]["content"]).calls
    assert (call.name, call.arguments) == ("Retrieve_memory", {"query": "the user's partner"})
    assert hits_of(unk) == [("mem_16", "The user works as a translator."), ("mem_39", "The user works at Vathvaezhion Labs."),
                            ("mem_31", "The user's doctor is Dr. Pexnun.")]
    assert unk.gold == D.UNKNOWN_REPLY and D.messages(unk)[-2:] == unk.after


def test_variant_labels_follow_what_is_shown(variants):
    seen = Counter()
    for it in variants["train"] + variants["heldout"]:
        contents = [c for _, c in it.shown]
        earlier = stored_in_history(it)
        if it.template.startswith("add_shared."):
            seen["add_shared", it.template.split(".")[1]] += 1
            other = D.SHARED[it.fact]
            assert it.label == "add" and about(it.fact, it.gold) and D.carries_value(it.gold, it.value)
            assert not any(about(it.fact, c) for c in contents + earlier)     # nothing to update
            [look] = [c for c in contents if about(other, c)]
            word = look.rstrip(".").split()[-1]
            assert word in it.user
            assert (word == it.value) == it.template.startswith("add_shared.new")
        else:
            seen["answer_unknown"] += 1
            assert it.template.startswith("answer_unknown.") and (it.label, it.basis) == ("answer", "unknown")
            assert [m["role"] for m in it.after] == ["assistant", "tool"] and it.gold == D.UNKNOWN_REPLY
            hits = hits_of(it)
            assert hits and set(it.shown) <= set(hits) and len({m for m, _ in hits}) == len(hits)
            assert not any(about(it.fact, c) for _, c in hits)     # no hit answers it
            assert not any(about(it.fact, c) for c in earlier)
            seen["paired hit"] += any(about(D.SHARED.get(it.fact, ""), c) for _, c in hits) if it.fact in D.SHARED else 0
    assert seen["add_shared", "old"] > 40 and seen["add_shared", "new"] > 40 and seen["answer_unknown"] == 160
    assert seen["paired hit"] > 10


def test_variants_share_no_template_and_no_entity_across_splits(variants):
    t, h = variants["train"], variants["heldout"]
    assert not {it.template for it in t} & {it.template for it in h}
    assert not {e for it in t for e in it.entities} & {e for it in h for e in it.entities}
    assert len({it.template for it in h}) > 20
    with pytest.raises(ValueError, match="add_shared"):
        D.generate(2, 0, "train", classes=["add", "shout"])


def test_abstain_check():
    unk = D.DecisionItem(id="u", split="natural", label="answer", user="what's my landlord's name?", basis="unknown")
    said = lambda text: D.abstain_check(unk, D.Decision(True, "answer", answer=text))  # noqa: E731
    assert said(D.UNKNOWN_REPLY) and said("I don\u2019t know your landlord's name.") and said("Nothing about that.")
    assert not said("Your dentist is Dr. Patel in Leeds.") and not said("Dr. Patel.")
    assert D.abstain_check(unk, D.Decision(True, "retrieve")) is None
    known = D.DecisionItem(id="k", split="natural", label="answer", user="q", basis="memory")
    assert D.abstain_check(known, D.Decision(True, "answer", answer="No idea")) is None
    s = D.score([unk, unk, known], [D.Decision(True, "answer", answer="You never told me."),
                                    D.Decision(True, "answer", answer="Your landlord is Dr. Patel."),
                                    D.Decision(True, "answer", answer="x")])
    assert s["abstain"] == {"n": 2, "correct": 1, "accuracy": 0.5} and s["accuracy"] == 1.0
    assert "says it does not know (answers after a search that found only other things): 50.0 % (1/2)" \
        in D.render_report(s)
    assert "says it does not know" not in D.render_report(D.score([known], [D.Decision(True, "answer")]))

# -- splits, determinism, balance --------------------------------------------------------------

def test_train_and_heldout_share_no_template_and_no_entity(train, heldout):
    t_templates, h_templates = {it.template for it in train}, {it.template for it in heldout}
    assert len(t_templates) > 60 and len(h_templates) > 40
    assert not t_templates & h_templates
    t_ent = {e for it in train for e in it.entities}
    h_ent = {e for it in heldout for e in it.entities}
    assert len(t_ent) > 500 and len(h_ent) > 500
    assert not t_ent & h_ent
    # and no wording: every pool of words the model reads is partitioned
    for pools in (*D.POOLS.values(), D.CHAT, D.GENERAL, D.ACK, D.PASTE, D.PASTE_ACK, D.FILLER, D.REQUESTS):
        assert not set(pools["train"]) & set(pools["heldout"])
    for group in (D.FRAMES["add"], D.FRAMES["update"], D.FRAMES["delete"], D.FRAMES["ask"], D.FILTER_FRAMES,
                  D.SUMMARY_TURNS):
        assert not set(group["train"]) & set(group["heldout"])
        assert not set(group["train"].values()) & set(group["heldout"].values())
    for fact in D.FACTS.values():
        for kind in ("add", "update", "delete", "ask"):
            wordings = getattr(fact, kind)
            assert wordings[2] not in wordings[:2]
    # the entities really are in the words the model reads
    it = next(i for i in heldout if i.label == "update")
    text = json.dumps(D.messages(it)[-1])
    assert sum(e in text for e in it.entities) >= 2


def test_wide_long_wordings_add_train_templates_only(heldout):
    """``wide``: more Filter/Summary wordings for the train split, nothing else changes."""
    base, wide = D.generate(140, 0, "train"), D.generate(140, 0, "train", wide=True)
    long = ("filter", "summary")
    assert [it.to_dict() for it in base if it.label not in long] == \
        [it.to_dict() for it in wide if it.label not in long]
    t_base = {it.template for it in base if it.label in long}
    t_wide = {it.template for it in wide if it.label in long}
    assert len(t_wide) >= 2 * len(t_base) and not t_wide & {it.template for it in heldout}
    assert any(it.template.startswith("filter.f9") for it in wide)
    assert not {e for it in wide for e in it.entities} & {e for it in heldout for e in it.entities}
    held_words = {*D.REQUESTS["heldout"], *D.FILTER_FRAMES["heldout"].values(), *D.SUMMARY_TURNS["heldout"].values()}
    natural_users = {it.user for it in D.natural_items()}
    for words in (D.REQUESTS_WIDE, D.FILTER_FRAMES_WIDE.values(), D.SUMMARY_TURNS_WIDE.values()):
        assert not set(words) & held_words
    assert not {it.user for it in wide} & natural_users
    assert not set(D.FILTER_FRAMES_WIDE) & {*D.FILTER_FRAMES["train"], *D.FILTER_FRAMES["heldout"]}
    assert not set(D.SUMMARY_TURNS_WIDE) & {*D.SUMMARY_TURNS["train"], *D.SUMMARY_TURNS["heldout"]}
    for it in wide:
        if it.label in long:   # the cue that separates them holds for the new wordings too
            assert (it.basis.lower() in it.user.lower()) == (it.label == "summary")
    with pytest.raises(ValueError, match="train split only"):
        D.generate(3, 0, "heldout", wide=True)


def test_same_seed_same_items_prefix_stable_and_balanced():
    a = [it.to_dict() for it in D.generate(70, 5, "heldout")]
    assert a == [it.to_dict() for it in D.generate(70, 5, "heldout")]
    assert a[:10] == [it.to_dict() for it in D.generate(10, 5, "heldout")]
    assert a != [it.to_dict() for it in D.generate(70, 6, "heldout")]
    assert Counter(d["label"] for d in a) == {c: 10 for c in D.CLASSES}
    assert Counter(it.label for it in D.generate(9, 0, "train")) == {
        "add": 2, "update": 2, "delete": 1, "retrieve": 1, "answer": 1, "filter": 1, "summary": 1}
    only = D.generate(6, 0, "train", classes=("update", "delete"))
    assert [it.label for it in only] == ["update", "delete"] * 3
    with pytest.raises(ValueError, match="natural_items"):
        D.generate(3, 0, "natural")
    with pytest.raises(ValueError, match="choose from"):
        D.generate(3, 0, "train", classes=("store",))
    # JSON round trip
    for d in a[:14]:
        assert D.DecisionItem.from_dict(json.loads(json.dumps(d))).to_dict() == d


# -- serving format ------------------------------------------------------------------------------

def test_messages_are_the_serving_context():
    it = next(i for i in D.generate(14, 2, "heldout") if i.label == "update" and i.history)
    system = prompts.render_system(today="2025-03-04", budget=1234, tool_schemas=grammar_schemas())
    msgs = D.messages(it, today="2025-03-04", budget=1234, guided=True)
    demos = prompts.render_demonstrations()
    assert msgs[0] == {"role": "system", "content": system} and "Context budget: 1234 tokens" in system
    assert msgs[1:1 + len(demos)] == demos
    assert msgs[1 + len(demos):-1] == it.history
    last = msgs[-1]
    assert last == {"role": "user", "content": prompts.render_user_turn(it.user, prompts.render_related(it.shown))}
    assert last["content"].startswith(prompts.RELATED_HEADER) and last["content"].endswith(f"User: {it.user}")
    for mid, content in it.shown:
        assert f"[{mid}] {content}" in last["content"]
    bare = D.messages(it, guided=False)
    assert bare[1:-1] == it.history and f"Today is {D.TODAY}" in bare[0]["content"]
    assert f"Context budget: {it.budget} tokens" in bare[0]["content"]
    # history holds serving-format messages: user turns with their header, no think left
    assert all(m["role"] in ("user", "assistant", "tool") for m in it.history)
    assert all("<think>" not in m["content"] for m in it.history)
    assert all(m["content"].startswith(("[Related memories", )) for m in it.history if m["role"] == "user")


def test_no_item_uses_the_demonstration_ids(train):
    for it in train + D.natural_items():
        text = json.dumps(D.messages(it, guided=False))
        assert not any(f"mem_9{k}" in text for k in (1, 2, 3))


# -- oracle and scoring ---------------------------------------------------------------------------

def _grammar_order(name: str) -> list[str]:
    [schema] = [s for s in grammar_schemas() if s["name"] == name]
    props, req = schema["parameters"]["properties"], schema["parameters"]["required"]
    return [k for k in props if k in req] + [k for k in props if k not in req]


def test_oracle_completions_parse_and_score_perfectly(train, heldout):
    variants = D.generate(40, 0, "train", classes=tuple(D.VARIANTS)) + \
        D.generate(40, 0, "heldout", classes=tuple(D.VARIANTS))
    items = train[:140] + heldout[:140] + D.natural_items() + variants
    decisions = []
    for it in items:
        text = D.oracle_completion(it)
        step = parse_step(text)
        assert step.error is None, text
        assert step.think.startswith(f"Kind: {it.kind}.") and it.kind in prompts.THINK_KINDS
        for c in step.calls:       # what the serving grammar would decode: its key order
            order = _grammar_order(c.name)
            assert list(c.arguments) == [k for k in order if k in c.arguments]
        d = D.classify(text)
        assert (d.parsed, d.action) == (True, it.label)
        if it.label in ("update", "delete"):
            assert d.memory_id == it.target_id
        decisions.append(d)
    s = D.score(items, decisions)
    assert s["parse_share"] == s["accuracy"] == s["strict_accuracy"] == s["id"]["accuracy"] == 1.0
    assert s["id"]["n"] == sum(it.label in ("update", "delete") for it in items)
    assert all(v["accuracy"] == 1.0 for v in s["per_class"].values())
    # every add/update names the value its content must keep, and the oracle's content keeps it
    assert s["value"]["n"] == sum(it.label in ("add", "update") for it in items) and s["value"]["accuracy"] == 1.0
    # every answer to a question nothing stored answers says so
    assert s["abstain"]["n"] == sum(it.basis == "unknown" for it in items) >= 22 and s["abstain"]["accuracy"] == 1.0


def test_carries_value_compares_words_and_numbers():
    assert D.carries_value("The user's mother's birthday is the 14th of June.", "June 14")
    assert D.carries_value("The user works as Head of Design.", "head of design")
    assert not D.carries_value("The user's mother's birthday is June 4.", "June 14")
    assert not D.carries_value("The user's partner is Reinmou.", "risotto")
    assert not D.carries_value(None, "Leeds") and not D.carries_value("The user lives in Leeds.", "")
    assert D.carries_value("Pharmacist", "a pharmacist") and D.carries_value("Red Fiat.", "a red Fiat")
    assert not D.carries_value("A nurse.", "a pharmacist")


def test_classify_maps_steps_to_classes():
    assert D.classify("<think>x</think>\n<answer>hi</answer>") == D.Decision(True, "answer", answer="hi")
    assert D.classify("<think>x</think>\nI will just say hi") == D.Decision(False, "unparsed")
    unknown = '<think>x</think>\n<tool_call>[{"name": "Forget", "arguments": {}}]</tool_call>'
    assert D.classify(unknown).action == "other"
    two = ('<think>x</think>\n<tool_call>[{"name": "Retrieve_memory", "arguments": {"query": "a"}}, '
           '{"name": "Update_memory", "arguments": {"memory_id": "mem_3", "content": "b"}}]</tool_call>')
    assert D.classify(two) == D.Decision(True, "retrieve")      # the first call decides
    upd = '<tool_call>{"name": "Update_memory", "arguments": {"memory_id": 7, "content": "b"}}</tool_call>'
    assert D.classify(upd) == D.Decision(True, "update", "7", "b")
    assert D.same_id("7", "mem_7") and D.same_id(" mem_7 ", "mem_7") and not D.same_id("mem_8", "mem_7")
    assert not D.same_id(None, "mem_7") and not D.same_id("sister_birthday", "mem_7")


def test_score_matches_hand_computed_numbers():
    mk = lambda label, target=None, value="": D.DecisionItem(id=label, split="train", label=label,  # noqa: E731
                                                             user="u", target_id=target, value=value)
    items = [mk("add", value="Leeds"), mk("add"), mk("update", "mem_3", "Thursday"), mk("update", "mem_4", "nurse"),
             mk("delete", "mem_5"),
             mk("retrieve"), mk("answer"), mk("filter"), mk("summary"), mk("summary")]
    decisions = [D.Decision(True, "add", None, "The user lives in Leeds."),     # right, keeps the value
                 D.Decision(True, "retrieve"),            # wrong
                 D.Decision(True, "update", "mem_3", "gym on Tuesday"),       # right, right id, lost the value
                 D.Decision(True, "update", "mem_9", "A night-shift NURSE"),  # right, wrong id, keeps it
                 D.Decision(True, "update", "mem_5"),     # wrong class
                 D.Decision(True, "retrieve"),            # right
                 D.Decision(False, "unparsed"),           # unparsed
                 D.Decision(True, "summary"),             # wrong
                 D.Decision(True, "summary"),             # right
                 D.Decision(True, "other")]               # unknown tool
    s = D.score(items, decisions)
    assert (s["n"], s["parsed"], s["parse_share"]) == (10, 9, 0.9)
    assert (s["correct"], s["accuracy"]) == (5, 0.5)
    assert (s["strict_correct"], s["strict_accuracy"]) == (4, 0.4)
    assert s["id"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert s["value"] == {"n": 3, "correct": 2, "accuracy": 2 / 3}
    pc = s["per_class"]
    assert pc["add"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert pc["update"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    assert pc["delete"]["accuracy"] == 0.0 and pc["answer"]["accuracy"] == 0.0 and pc["summary"]["accuracy"] == 0.5
    c = s["confusion"]
    assert c["add"]["retrieve"] == 1 and c["delete"]["update"] == 1 and c["answer"]["unparsed"] == 1
    assert c["filter"]["summary"] == 1 and c["summary"]["other"] == 1 and c["summary"]["summary"] == 1
    assert sum(v for row in c.values() for v in row.values()) == 10
    report = D.render_report(s, "train split")
    assert "### train split (n = 10)" in report and "steps that parse: 90.0 % (9/10)" in report
    assert "| update | 2 | 2 | 100.0 % |" in report and "(1/2)" in report
    assert "content keeps the new value (add/update with the right action): 66.7 % (2/3)" in report
    assert "| delete | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |" in report
    assert "| retrieve | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |" not in report
    with pytest.raises(ValueError):
        D.score(items, decisions[:3])
    empty = D.score([], [])
    assert empty["accuracy"] is None and "–" in D.render_report(empty)


# -- the CLI entry --------------------------------------------------------------------------------

def test_parse_bench():
    assert D.parse_bench("hotpot,longmemeval") is None
    assert D.parse_bench("decisions") == ["heldout", "natural"]
    assert D.parse_bench("decisions:train, decisions:natural,decisions:train") == ["train", "natural"]
    assert D.parse_bench("decisions:variants") == ["variants"]


@pytest.mark.parametrize("args,message", [
    (["--bench", "decisions,hotpot"], "runs on its own"),
    (["--bench", "decisions:test"], "SPLIT one of train, heldout, natural, variants"),
    (["--bench", "decisions", "--methods", "agemem"], "do not apply"),
    (["--bench", "decisions", "--policy", "minilm-l6-v2"], "is an embedder, not a policy"),
    (["--bench", "decisions", "--adapter", "no-such.lora.gguf"], "no-such.lora.gguf: model file not found"),
    (["--bench", "hotpot", "--adapter", str(Path(__file__))], "not a GGUF file"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "eval", *args])
    assert r.exit_code == 1 and r.output.startswith("Error:") and message in r.output, r.output
    assert r.output.strip().count("\n") == 0


# -- the real small policy ------------------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_decisions_parse_and_report(small_policy, data_dir, tmp_path, monkeypatch):
    """SmolLM2-135M on three items (two through ``run_decisions`` with the guided "Kind:"
    think, one through the CLI unguided): structure only. The grammar guarantees a parse;
    the model is too weak to choose well. Short items, no demonstrations and small token
    caps keep it to three short prompts."""
    monkeypatch.setattr(small_policy, "max_new_tokens", 48)
    monkeypatch.setattr(small_policy, "think_tokens", 16)
    items = D.generate(2, 0, "heldout")
    decisions, records = D.run_decisions(small_policy, items, guided=False)
    assert all(d.parsed for d in decisions), [r["completion"] for r in records]
    assert all(r["completion"].startswith("<think>Kind: ") for r in records)
    assert [r["label"] for r in records] == ["add", "update"] and all(r["prompt_tokens"] > 300 for r in records)
    s = D.score(items, decisions)
    assert s["parse_share"] == 1.0 and sum(s["confusion"]["add"].values()) == 1
    assert "### smoke (n = 2)" in D.render_report(s, "smoke")

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(Path(data_dir) / "models", target_is_directory=True)
    (home / "config.toml").write_text("max_new_tokens = 48\nthink_tokens = 16\nguided = false\nn_threads = 1\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["--data-dir", str(home), "eval", "--bench", "decisions:train", "--n", "1",
                                  "--policy", "smollm2-135m", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "### train split (n = 1)" in r.output and f"report: {out / D.REPORT_NAME}" in r.output
    saved = json.loads((out / "decisions-train.json").read_text())
    assert saved["scores"]["n"] == 1 and saved["records"][0]["parsed"] is True
    assert D.DecisionItem.from_dict(saved["items"][0]).label == "add"
    assert (out / D.REPORT_NAME).read_text().startswith("## Protocol decisions: smollm2-135m")
    # --adapter takes GGUF LoRA adapters only: a model file is refused in one line, before any step
    model_file = next((home / "models").rglob("*.gguf"))
    r = CliRunner().invoke(main, ["--data-dir", str(home), "eval", "--bench", "decisions:train", "--n", "1",
                                  "--policy", "smollm2-135m", "--adapter", str(model_file)])
    assert r.exit_code == 1 and "not a GGUF LoRA adapter" in r.output and r.output.strip().count("\n") == 0, r.output


def test_memory_topic_reads_each_fact_sentence():
    assert D.memory_topic("The user's sister Ana lives in Leeds.") == "where the user's sister Ana lives"
    assert D.memory_topic("The user is learning Welsh.") == "the language the user is learning"
    assert D.memory_topic("The user is vegan.") == "the user's diet"
    assert D.memory_topic("The user's cat is called Tom.") == "the user's pet"
    assert D.memory_topic("The user likes long walks.") is None
    r = random.Random(0)
    for f in D.FACTS.values():   # every fact type's sentence maps back to its own subject
        s = {"v": "Xq", "species": "cat", "rel": "sister", "name": "Ana", **f.extra(r, D._SplitNames(r, "train"), "train")}
        assert D.memory_topic(f.sentence.format(**s)) == (f.topic or f.query).format(**s)


def test_context_usage_lines_follow_the_tokens_before_each_user_turn(train):
    """With a token counter every user turn starts with how full the context was before it (as
    ``Agent(context_usage=True)`` writes it); without one the context is unchanged, so policies
    trained without the line see what they learnt."""
    for it in train[:14]:
        plain = D.messages(it, guided=False)
        shown = D.messages(it, guided=False, count_tokens=D.est_tokens)
        used = 0
        for a, b in zip(plain, shown):
            if a["role"] == "user":
                line = prompts.render_context_usage(used, it.budget)
                assert b["content"] == f"{line}\n{a['content']}"
                assert prompts.user_text_of(b["content"]) == prompts.user_text_of(a["content"])
            else:
                assert a == b
            used += D.est_tokens(b["content"])
        last = [m for m in shown if m["role"] == "user"][-1]["content"]
        pct = int(last.split()[1])
        assert (pct >= 50) == (it.label in ("filter", "summary")), (it.label, pct)


def test_context_usage_rounds_to_ten_percent_and_budget_reads_back():
    assert prompts.render_context_usage(0, 4096) == "[Context: 0 % full]"
    assert prompts.render_context_usage(3322, 4096) == "[Context: 80 % full]"
    assert prompts.render_context_usage(4300, 4096) == "[Context: 100 % full]"
    assert prompts.render_context_usage(5000, 4096) == "[Context: 120 % full]"
    assert prompts.budget_of(prompts.render_system(today="2025-01-01", budget=2048, tool_schemas=[])) == 2048
    with pytest.raises(ValueError, match="context budget"):
        prompts.budget_of("You are helpful.")


def test_found_items_put_the_memory_among_the_search_hits_and_not_known_is_wrong_there():
    items = D.found_items(6, 1)
    assert len(items) == 6 and len({it.id for it in items}) == 6
    for it in items:
        assert it.label == "answer" and it.basis == "memory" and it.id.endswith("+found")
        assert it.target_id not in {m for m, _ in it.shown}       # found by the search, not shown
        assert "Retrieve_memory" in it.after[0]["content"] and f"[{it.target_id}]" in it.after[1]["content"]
        assert D.messages(it)[-1] == {"role": "tool", "content": it.after[1]["content"]}
        assert D.classify(D.oracle_completion(it)).action == "answer"
    it = items[0]
    right = D.Decision(True, "answer", answer=it.gold)
    told = D.Decision(True, "answer", answer=D.UNKNOWN_REPLY)
    assert D.found_check(it, right) is True and D.found_check(it, told) is False
    assert D.found_check(it, D.Decision(True, "retrieve")) is None
    # an answer that names another hit's value does not use what the search found
    assert all(D.carries_value(x.gold, x.value) for x in items)
    other = next(x for x in items if not D.carries_value(x.gold, it.value))
    assert D.found_check(it, D.Decision(True, "answer", answer=other.gold)) is False
    assert D.abstain_check(it, told) is None
    s = D.score([it, it], [right, told])
    assert s["found"] == {"n": 2, "correct": 1, "accuracy": 0.5} and s["accuracy"] == 1.0
    assert ("answers from what the search found (names its value, does not say it is unknown): 50.0 % (1/2)"
            in D.render_report(s))
    assert D.parse_bench("decisions:found,decisions:variants") == ["found", "variants"]
