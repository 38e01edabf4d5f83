"""The chat probes: what each check accepts, that the set is well formed and kept apart from the
training wordings, and one real run on a scratch database."""

from __future__ import annotations

import dataclasses

from agemem_lite import chat_probes as P

PROBE = {p.id: p for p in P.PROBES}


def test_the_probes_are_well_formed():
    assert len(PROBE) == len(P.PROBES)
    assert {p.kind for p in P.PROBES} == set(P.KINDS)
    for p in P.PROBES:
        assert p.stored or p.reply or p.unknown, p.id   # each checks something
        assert all(0 <= i < len(p.memories) for i in p.replaced), p.id


def test_no_probe_wording_is_in_the_warm_start_data():
    from train import warm_start as W

    said = {p.user.lower() for p in P.PROBES}
    assert not said & {a.lower() for a in W.OVERVIEW_ASKS}
    for t in W.two_fact_turns(40, 0) + W.overview_turns(40, 0):
        assert t.context[-1]["content"].split("User: ")[-1].lower() not in said


def test_two_facts_need_both_stored():
    p = PROBE["two-1"]
    assert P.check(p, ["The user's name is Priya.", "The user lives in Bristol."], "Noted.") == {
        "stored priya": True, "stored bristol": True}
    assert all(P.check(p, ["Priya lives in Bristol."], "Noted.").values())   # one memory holding both is fine
    assert P.check(p, ["I live in Bristol"], "Noted.") == {"stored priya": False, "stored bristol": True}


def test_an_update_must_keep_the_subject_and_change_the_old_memory():
    p = PROBE["upd-1"]
    old = p.memories[0]
    assert all(P.check(p, ["The user's sister Anika is a teacher in Cardiff."], "Updated.").values())
    assert P.check(p, ["teacher"], "Updated.")["stored anika teacher"] is False    # the fragment v7 wrote
    assert P.check(p, [old, "Anika is a teacher."], "Noted.")[f"changed {old!r}"] is False   # added beside it


def test_about_me_needs_every_memory_in_the_reply():
    p = PROBE["me-1"]
    good = "You live in Oxford, your cat is called Miso and you are allergic to peanuts."
    assert all(P.check(p, list(p.memories), good).values())
    assert P.check(p, list(p.memories), "You are allergic to peanuts.") == {
        "reply names oxford": False, "reply names miso": False, "reply names peanuts": True}
    assert not any(P.check(p, list(p.memories), None).values())   # no reply at all


def test_not_told_needs_an_abstention_without_the_wrong_memory():
    p = PROBE["unk-1"]
    assert all(P.check(p, list(p.memories), "You have not told me that yet.").values())
    assert P.check(p, list(p.memories), "Your dentist is Dr. Patel in Leeds.") == {
        "reply avoids patel": False, "reply says not told": False}


def test_summarise_counts_passes_per_kind():
    rows = [{"kind": "recall", "passed": True, "calls": []},
            {"kind": "recall", "passed": False, "calls": ["Retrieve_memory"]},
            {"kind": "two facts", "passed": True, "calls": ["Add_memory", "Add_memory"]}]
    s = P.summarise(rows)
    assert s["n"] == 3 and s["passed"] == 2
    assert s["by_kind"]["recall"] == {"n": 2, "passed": 1, "calls": {"Retrieve_memory": 1}}
    assert s["by_kind"]["two facts"]["calls"] == {"Add_memory": 2}


def test_probes_run_as_whole_turns_on_a_scratch_database(small_policy, embedder, settings, tmp_path):
    """SmolLM2 runs two probes end to end: each starts from its own memories only, and the
    user's database (settings.db_path) is never created."""
    s = dataclasses.replace(settings, data_dir=tmp_path / "home", max_steps_per_turn=2, max_new_tokens=48)
    rows = P.run_probes(small_policy, embedder, s, probes=[PROBE["rec-1"], PROBE["upd-1"]])
    assert [r["id"] for r in rows] == ["rec-1", "upd-1"]
    for r, p in zip(rows, (PROBE["rec-1"], PROBE["upd-1"])):
        assert set(r["checks"]) == set(P.check(p, [], None))
        assert r["passed"] == all(r["checks"].values())
        assert r["steps"]
        # nothing of the other probe leaks in: what is stored is this probe's memories and the turn's writes
        writes = sum(c == "Add_memory" for c in r["calls"])
        assert len(r["memories_after"]) <= len(p.memories) + writes
    assert not s.db_path.exists()
    text = P.render_report(rows, "smollm2-135m")
    assert "| all | 2 |" in text and "rec-1" in text


def test_chat_runs_alone_and_takes_no_methods(tmp_path):
    from click.testing import CliRunner

    from agemem_lite.cli import main

    home = ["--data-dir", str(tmp_path)]
    r = CliRunner().invoke(main, [*home, "eval", "--bench", "chat,hotpot"])
    assert r.exit_code != 0 and "--bench chat runs alone" in r.output
    r = CliRunner().invoke(main, [*home, "eval", "--bench", "chat", "--methods", "agemem"])
    assert r.exit_code != 0 and "do not apply to --bench chat" in r.output
    assert "Traceback" not in r.output


def test_a_short_run_takes_one_probe_of_each_kind_in_turn():
    five = P.first(5)
    assert sorted(p.kind for p in five) == sorted(P.KINDS)
    assert [p.id for p in five] == [p.id for p in P.PROBES if p in five]   # in the set's order
    seven = P.first(7)
    assert five == tuple(p for p in seven if p in five) and len(seven) == 7
    assert P.first(20) == P.first(99) == P.PROBES
    assert len(P.first(1)) == 1
