"""The method variants that ``episodes.run_episode`` compares (SPEC §7 baselines), as one table.

Every method runs the same three-stage episode (SPEC §4) through the same agent
loop; a row of ``METHODS`` says only what differs:

==============  =====================  =========================  =====  =================
method          tools the policy has   environment retrieval       reset  environment adds
==============  =====================  =========================  =====  =================
agemem          all six (SPEC §2)      stage-1 turns (SPEC §4)     yes    no
agemem-rag      Add/Update/Delete      every turn, every stage     yes    no
no-memory       none (answer only)     none                        yes    no
full-context    none (answer only)     none                        NO     no
add-only        none (answer only)     stage-3 question            yes    every stage-1/2 turn
==============  =====================  =========================  =====  =================

- ``agemem-rag`` is SPEC §7's AgeMem-RAG, "STM tools replaced by retrieval every step":
  SPEC §2 lists Retrieve_memory, Summary_context and Filter_context as the STM tools,
  so all three go and the environment's hybrid retrieval is shown with every turn
  instead. (``Agent`` retrieves once per user turn, before its first step; it has no
  per-step hook, so "every step" is every turn here.)
- ``no-memory``: no LTM at all; the answer can only come from the stage-3 context
  (the stage-2 distractors and the question).
- ``full-context``: no reset between the stages, so stage 1's information is still in
  the context at the question (the long-context upper bound; ``Agent`` evicts the
  oldest messages only if the model's window would overflow).
- ``add-only``: a store-everything memory in the style of plain RAG memories: the
  environment stores each stage-1/2 turn verbatim and shows the top-k hybrid hits
  with the question.

Methods without tools run one step per turn, which ``Agent`` decodes answer-only.

How tools are taken away: ``run_episode`` opens the agent with
``Agent(tools=method.tools)``, which lists only those tools in the system prompt
and sets ``ToolEnv.allowed``, so ``tools.dispatch`` answers a call to any other
tool with an error result for the model (SPEC §2) before anything changes. At
each turn ``Agent`` also narrows a grammar-decoding policy (``LlamaPolicy.use_tools``)
to those tools, so they are the only calls it can write; with no tools at all,
``Agent`` decodes every step answer-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .memory.tools import LTM_WRITES, TOOLS

STAGES = ("ltm", "stm", "reason")   # SPEC §4 stages 1-3, as in ``records.Step.stage``
ALL_TOOLS = tuple(TOOLS)


@dataclass(frozen=True)
class Method:
    """One row of the method table (see the module docstring)."""

    name: str
    tools: tuple[str, ...]           # tools the policy may call; others get an error result
    retrieval: tuple[str, ...]       # stages whose turns show the environment's retrieval
    reset: bool = True               # SPEC §4 context reset between stage 1 and stage 2
    env_adds: bool = False           # the environment stores every stage-1/2 turn verbatim

    def retrieval_stages(self, stage1: bool = True) -> tuple[str, ...]:
        """Stages with environment retrieval; ``stage1=False`` drops stage 1 (an ablation)."""
        return tuple(s for s in self.retrieval if stage1 or s != "ltm")


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("agemem", ALL_TOOLS, ("ltm",)),
    Method("agemem-rag", tuple(t for t in ALL_TOOLS if t in LTM_WRITES), STAGES),
    Method("no-memory", (), ()),
    Method("full-context", (), (), reset=False),
    Method("add-only", (), ("reason",), env_adds=True),
)}


__all__ = ["STAGES", "ALL_TOOLS", "Method", "METHODS"]
