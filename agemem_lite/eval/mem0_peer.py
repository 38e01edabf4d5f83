"""Mem0 OSS as an offline, same-backbone peer (SPEC §7 baselines: "Mem0").

An optional extra: ``pip install 'agemem-lite[mem0]'`` (``mem0ai`` plus the
``[server]`` packages of llama-cpp-python). In ``agemem eval`` it is two methods,
``mem0`` (Mem0 proper: LLM fact extraction) and ``mem0-raw`` (every turn stored
verbatim), on the QA benchmarks only (``PEER_METHODS``; ``Mem0Session`` is what the
harness opens, ``make_peer_record`` what it writes).

How it runs, all on 127.0.0.1 (measured working offline with mem0ai 2.2.1):

- two llama-cpp-python OpenAI-compatible servers (``server_argv`` gives the command
  lines, ``serve`` starts and stops them): one serves the policy GGUF for chat, one
  serves the MiniLM embedder GGUF with ``--embedding True`` (384-d, mean pooled);
- Mem0 talks to them as provider ``openai`` (LLM) and ``openai`` (embedder) with
  ``openai_base_url``; its vector store is qdrant in local on-disk mode (``path=``, no
  server) and its history is a local SQLite file (``mem0_config`` builds the dict);
- telemetry is off: ``MEM0_TELEMETRY=False`` must be in the environment before mem0 is
  imported (``mem0/memory/telemetry.py`` reads it at import time). With it on, mem0
  2.2.1 posts to ``https://us.i.posthog.com/batch/`` (posthog client) and fetches
  ``https://raw.githubusercontent.com/mem0ai/mem0/main/mem0/memory/oss_notices_config.json``
  (``mem0/memory/notices.py``). ``MEM0_DIR`` is set too: mem0 creates ``~/.mem0`` at
  import otherwise. ``OPENROUTER_API_KEY`` in the environment silently redirects
  mem0's LLM calls to openrouter.ai, so ``open_memory`` refuses to run with it set.
- Without ``spacy``/``fastembed`` installed (they are not in the extra: fastembed's BM25
  model and spaCy's ``en_core_web_sm`` are downloads), mem0 logs warnings and runs
  dense search only.

One task (``run_task``): every stage-1 turn, then every stage-2 turn, packed into at
most ``n_max`` turns each as ``episodes.pack_turns`` packs them, goes through
``Memory.add`` (``infer=True``: one LLM fact-extraction call per turn with a ~7.9k-token
system prompt; ``infer=False``: the turn is stored verbatim, no LLM call). The question
is searched (top-k), and the same GGUF answers it through the chat server from the
retrieved memories with the fixed prompt below. mem0 2.x is ADD-only: a correction is
stored next to the stale fact, never replacing it.

Server settings that matter: ``n_ctx`` ≥ 12288 for the extraction prompt (8.5k tokens
with SmolLM2's tokenizer, beyond its 8192 training context); leave the server's
``--cache`` off (it grew to 23 GB here); the server keeps the last prompt's KV state,
so consecutive ``add`` calls re-read only the suffix after mem0's fixed system prompt.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .records import JUDGE_NAMES, record_header

MEM0_EXTRA_HINT = "mem0 is not installed: pip install 'agemem-lite[mem0]'"
PEER_METHODS = {"mem0": True, "mem0-raw": False}      # harness method -> Mem0PeerConfig.infer
PEER_JUDGE = "Mem0 ADD events (memories Mem0 reported adding); Mem0 has no other tools"

# The answer prompt of the Mem0 peer (SPEC §7: the baseline answers with the same
# backbone from its retrieved memories). Every string the model reads belongs in
# prompts.py (STYLE §3); these live here until that module is free to edit.
MEM0_ANSWER_SYSTEM = (
    "You answer the user's question using your memories of earlier conversations with "
    "the user. Reply with the answer only, a short phrase, no explanation. If the "
    "memories do not give the answer, give your best guess.")
MEM0_ANSWER_USER = "Memories:\n{memories}\n\nQuestion: {question}"
NO_MEMORIES = "(none)"


def render_answer_messages(question: str, memories: list[str]) -> list[dict]:
    """The fixed chat messages that ask the policy to answer from the retrieved memories."""
    body = "\n".join(f"- {m}" for m in memories) if memories else NO_MEMORIES
    return [{"role": "system", "content": MEM0_ANSWER_SYSTEM},
            {"role": "user", "content": MEM0_ANSWER_USER.format(memories=body, question=question)}]


def _f(default, help: str, spec: str = "§7"):
    return field(default=default, metadata={"help": help, "spec": spec})


@dataclass
class Mem0PeerConfig:
    """Where the Mem0 peer's servers and files are, and how one task runs through it."""

    data_dir: str = _f("mem0-peer", "Folder of the peer's files: qdrant/ (local vector store), "
                       "history.db (mem0's SQLite history) and mem0/ (MEM0_DIR).")
    chat_url: str = _f("http://127.0.0.1:8871/v1", "Base URL of the llama-cpp-python chat server "
                       "serving the policy GGUF (OpenAI-compatible).")
    embed_url: str = _f("http://127.0.0.1:8872/v1", "Base URL of the llama-cpp-python server run "
                        "with --embedding True on the MiniLM embedder GGUF.")
    answer_url: str | None = _f(None, "Base URL of the server that answers the question; None = chat_url. "
                                "A second chat server on the same GGUF keeps mem0's extraction prompt "
                                "in chat_url's KV cache across tasks (the answer prompt evicts it).")
    chat_model: str = _f("policy", "Model name sent to the chat server (its --model_alias; a "
                         "single-model server answers any name).")
    embed_model: str = _f("minilm", "Model name sent to the embedding server.")
    embedding_dims: int = _f(384, "Embedder output size (all-MiniLM-L6-v2: 384).")
    collection: str = _f("agemem_mem0", "Qdrant collection name.")
    infer: bool = _f(True, "True: mem0 asks the LLM to extract facts from every turn (Mem0 proper). "
                     "False: every turn is stored verbatim (no LLM call while adding).")
    top_k: int = _f(3, "Memories retrieved with the question (EpisodeConfig.top_k's default).", "§2")
    search_threshold: float = _f(0.1, "mem0's similarity floor for search (its default).")
    n_max: int = _f(8, "Most turns per stage, packed as episodes.pack_turns does (EpisodeConfig.n_max).",
                    "§4")
    n_distractors: int | None = _f(None, "Distractor turns in stage 2; None = all the task's.", "§4")
    llm_max_tokens: int = _f(1024, "Cap on mem0's extraction reply (mem0's default is 2000).")
    answer_max_tokens: int = _f(64, "Cap on the answer.")
    temperature: float = _f(0.0, "Sampling temperature of extraction and answer (greedy).")
    timeout_s: float = _f(1800.0, "HTTP timeout of one LLM call. A cold 8k-token extraction prompt "
                          "took 192 s with SmolLM2-135M on one thread; the OpenAI client's default "
                          "(600 s, 2 retries) would re-send it while the server still reads it.")
    seed: int = _f(0, "Rollout seed: names the mem0 user_id (one per rollout of a task).")

    def __post_init__(self):
        for name in ("embedding_dims", "top_k", "n_max", "llm_max_tokens", "answer_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be ≥ 1")
        for name in ("chat_url", "embed_url", "answer_url"):
            if name == "answer_url" and self.answer_url is None:
                continue
            if not getattr(self, name).startswith(("http://127.", "http://localhost", "http://[::1]")):
                raise ValueError(f"{name}={getattr(self, name)!r}: the peer runs offline; point it at "
                                 "a llama-cpp-python server on this machine (http://127.0.0.1:PORT/v1)")
        if self.n_distractors is not None and self.n_distractors < 0:
            raise ValueError(f"n_distractors={self.n_distractors}: use ≥ 0, or None for all")


def mem0_config(cfg: Mem0PeerConfig) -> dict:
    """The dict for ``mem0.Memory.from_config``: both models through local
    OpenAI-compatible servers, qdrant on disk, SQLite history. Pure: starts nothing."""
    data = Path(cfg.data_dir).resolve()
    return {
        "llm": {"provider": "openai", "config": {
            "model": cfg.chat_model, "api_key": "sk-local", "openai_base_url": cfg.chat_url,
            "temperature": cfg.temperature, "max_tokens": cfg.llm_max_tokens}},
        "embedder": {"provider": "openai", "config": {
            "model": cfg.embed_model, "api_key": "sk-local", "openai_base_url": cfg.embed_url,
            "embedding_dims": cfg.embedding_dims}},
        "vector_store": {"provider": "qdrant", "config": {
            "collection_name": cfg.collection, "embedding_model_dims": cfg.embedding_dims,
            "path": str(data / "qdrant"), "on_disk": True}},
        "history_db_path": str(data / "history.db"),
    }


def server_argv(model_path: str | os.PathLike, *, port: int, alias: str, embedding: bool = False,
                n_ctx: int = 12288, n_threads: int = 1, lora_path: str | os.PathLike | None = None,
                python: str = sys.executable) -> list[str]:
    """The command line of one llama-cpp-python OpenAI-compatible server on 127.0.0.1
    (``lora_path``: a GGUF LoRA adapter applied at load, as a trained registry policy has)."""
    argv = [python, "-m", "agemem_lite.eval.llama_server", "--model", str(model_path), "--model_alias", alias,
            "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
            "--host", "127.0.0.1", "--port", str(port)]
    if lora_path:
        argv += ["--lora_path", str(lora_path)]
    return argv + ["--embedding", "True"] if embedding else argv


def _wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server for {base_url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"llama_cpp.server at {base_url} not ready after {timeout_s:.0f} s")


def _die_with_parent() -> None:
    """In the server's child process (Linux): get SIGTERM when the process that started it
    dies, so a killed eval leaves no server holding the port."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def serve(policy_gguf: str | os.PathLike, embedder_gguf: str | os.PathLike, *, chat_port: int = 8871,
          embed_port: int = 8872, n_ctx: int = 12288, n_threads: int = 1, data_dir: str = "mem0-peer",
          log_dir: str | None = None, ready_timeout_s: float = 120.0,
          lora_path: str | os.PathLike | None = None) -> Iterator[Mem0PeerConfig]:
    """Start the chat and embedding servers; yield a ``Mem0PeerConfig`` pointing at them
    (and at ``data_dir``); stop both on exit. ``log_dir``: where their logs go (default:
    discarded). ``lora_path``: the policy's adapter, if it has one. Runs
    ``python -m llama_cpp.server`` (through ``agemem_lite.eval.llama_server``) with this interpreter."""
    procs: list[subprocess.Popen] = []
    try:
        for name, path, port, emb, ctx in (("chat", policy_gguf, chat_port, False, n_ctx),
                                           ("embed", embedder_gguf, embed_port, True, 512)):
            argv = server_argv(path, port=port, alias="policy" if name == "chat" else "minilm",
                               embedding=emb, n_ctx=ctx, n_threads=n_threads,
                               lora_path=lora_path if name == "chat" else None)
            with open(Path(log_dir) / f"{name}.log", "w") if log_dir else open(os.devnull, "w") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                              preexec_fn=_die_with_parent if sys.platform == "linux" else None))
        cfg = Mem0PeerConfig(data_dir=data_dir, chat_url=f"http://127.0.0.1:{chat_port}/v1",
                             embed_url=f"http://127.0.0.1:{embed_port}/v1")
        _wait_ready(cfg.chat_url, procs[0], ready_timeout_s)
        _wait_ready(cfg.embed_url, procs[1], ready_timeout_s)
        yield cfg
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def _import_mem0(data_dir: Path):
    """Import mem0 with telemetry off and its home folder under ``data_dir``."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ.setdefault("MEM0_DIR", str(data_dir / "mem0"))
    try:
        import mem0
        from mem0.memory import telemetry
    except ImportError as e:
        raise ImportError(MEM0_EXTRA_HINT) from e
    if telemetry.MEM0_TELEMETRY:
        raise RuntimeError("mem0 was imported with telemetry on (it would contact us.i.posthog.com): "
                           "set MEM0_TELEMETRY=False before the first `import mem0`")
    return mem0


class _Usage:
    """Token counts of every LLM call mem0 makes (its ``response_callback``)."""

    def __init__(self):
        self.calls = self.prompt_tokens = self.completion_tokens = 0

    def __call__(self, llm, response, params) -> None:
        self.calls += 1
        if getattr(response, "usage", None) is not None:
            self.prompt_tokens += response.usage.prompt_tokens or 0
            self.completion_tokens += response.usage.completion_tokens or 0


def open_memory(cfg: Mem0PeerConfig):
    """A ``mem0.Memory`` on ``cfg``'s servers and folders (telemetry off). Its LLM client
    gets ``timeout_s`` and no retries, and records token usage in ``memory._agemem_usage``;
    ``memory._agemem_answer_client`` talks to ``answer_url``.
    Close it with ``close_memory``."""
    if os.environ.get("OPENROUTER_API_KEY"):
        raise RuntimeError("OPENROUTER_API_KEY is set: mem0 would send its LLM calls to openrouter.ai "
                           "instead of the local server; unset it")
    data = Path(cfg.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    mem0 = _import_mem0(data)
    from openai import OpenAI

    memory = mem0.Memory.from_config(mem0_config(cfg))
    memory.llm.client = OpenAI(api_key="sk-local", base_url=cfg.chat_url, timeout=cfg.timeout_s,
                               max_retries=0)
    memory._agemem_usage = memory.llm.config.response_callback = _Usage()
    memory._agemem_answer_client = memory.llm.client if cfg.answer_url in (None, cfg.chat_url) else \
        OpenAI(api_key="sk-local", base_url=cfg.answer_url, timeout=cfg.timeout_s, max_retries=0)
    return memory


def close_memory(memory) -> None:
    """Release the SQLite history and the qdrant folder's lock."""
    memory.close()
    with contextlib.suppress(Exception):
        memory.vector_store.client.close()


@dataclass
class Mem0Result:
    """One task through the Mem0 peer (JSON-ready)."""

    task_id: str
    method: str                     # "mem0" (LLM extraction) or "mem0-raw" (infer=False)
    user_id: str                    # mem0's namespace for this task
    question: str
    gold_answers: list[str]
    answer: str
    retrieved: list[dict]           # search hits: {"memory", "score"}, best first
    memories: list[str]             # everything stored for this task when it ended
    n_added: int                    # memories mem0 reported as ADD
    llm_calls: int                  # extraction calls + the answer call
    prompt_tokens: int              # all LLM calls, as the server counted them
    completion_tokens: int
    add_s: float
    search_s: float
    answer_s: float
    wall_s: float
    memory_quality: float | None    # SPEC §7 MQ: coverage of gold facts by the stored memories
    exact_match: float
    f1: float
    config: dict

    def to_dict(self) -> dict:
        return asdict(self)


def user_id(task_id: str, method: str, seed: int) -> str:
    """Mem0's namespace for one rollout of a task: ``ep:<task>:<method>:<seed>``."""
    return f"ep:{task_id}:{method}:{seed}"


def run_task(task, cfg: Mem0PeerConfig | None = None, memory=None) -> Mem0Result:
    """Run one ``episodes.EpisodeTask`` through Mem0 and answer its question.

    ``memory``: an open ``mem0.Memory`` (``open_memory``) to reuse across tasks; each task
    writes under its own user_id, ``ep:<task>:mem0:<seed>``, which must start empty."""
    from ..episodes import pack_turns
    from ..rewards import RewardConfig, answer_score, coverage

    cfg = cfg or Mem0PeerConfig()
    own = memory is None
    memory = memory if memory is not None else open_memory(cfg)
    method = "mem0" if cfg.infer else "mem0-raw"
    uid = user_id(task.id, method, cfg.seed)
    filters = {"user_id": uid}
    try:
        if memory.get_all(filters=filters, top_k=1)["results"]:
            raise ValueError(f"mem0 user_id {uid!r} already holds memories: a task starts with an empty "
                             "memory (SPEC §4); use another seed or data_dir")
        usage = memory._agemem_usage
        calls0, prompt0, completion0 = usage.calls, usage.prompt_tokens, usage.completion_tokens
        t0 = time.perf_counter()
        n = len(task.distractors) if cfg.n_distractors is None else cfg.n_distractors
        turns = pack_turns(task.information, cfg.n_max) + pack_turns(task.distractors[:n], cfg.n_max)
        n_added = 0
        for text in turns:
            out = memory.add(text, user_id=uid, infer=cfg.infer)
            n_added += sum(1 for r in out.get("results", []) if r.get("event") == "ADD")
        t1 = time.perf_counter()
        hits = memory.search(task.question, top_k=cfg.top_k, filters=filters,
                             threshold=cfg.search_threshold)["results"]
        retrieved = [{"memory": h["memory"], "score": h.get("score")} for h in hits]
        t2 = time.perf_counter()
        reply = memory._agemem_answer_client.chat.completions.create(
            model=cfg.chat_model, messages=render_answer_messages(task.question, [h["memory"] for h in hits]),
            temperature=cfg.temperature, max_tokens=cfg.answer_max_tokens)
        t3 = time.perf_counter()
        answer = (reply.choices[0].message.content or "").strip()
        stored = [m["memory"] for m in memory.get_all(filters=filters, top_k=10_000)["results"]]
        u = reply.usage
        mq = coverage(stored, task.gold_facts, RewardConfig().coverage_threshold) if task.gold_facts else None
        return Mem0Result(
            task_id=task.id, method=method, user_id=uid, question=task.question,
            gold_answers=list(task.answers), answer=answer, retrieved=retrieved, memories=stored,
            n_added=n_added, llm_calls=usage.calls - calls0 + 1,
            prompt_tokens=usage.prompt_tokens - prompt0 + (u.prompt_tokens if u else 0),
            completion_tokens=usage.completion_tokens - completion0 + (u.completion_tokens if u else 0),
            add_s=t1 - t0, search_s=t2 - t1, answer_s=t3 - t2, wall_s=t3 - t0, memory_quality=mq,
            exact_match=answer_score(answer, task.answers, "em", unanswerable=task.unanswerable),
            f1=answer_score(answer, task.answers, "f1", unanswerable=task.unanswerable),
            config=asdict(cfg))
    finally:
        if own:
            close_memory(memory)


class Mem0Session:
    """The peer as the harness uses it: servers up and one ``mem0.Memory`` open for a whole
    run (a context manager; ``run`` one task at a time). Files under ``data_dir``
    (qdrant/, history.db, the servers' logs), which a resumed run reuses."""

    def __init__(self, policy_gguf: str | os.PathLike, embedder_gguf: str | os.PathLike, *, data_dir: str | os.PathLike,
                 lora_path: str | os.PathLike | None = None, n_threads: int = 1, n_ctx: int = 12288,
                 chat_port: int = 8871, embed_port: int = 8872):
        self._serve = dict(policy_gguf=policy_gguf, embedder_gguf=embedder_gguf, chat_port=chat_port,
                           embed_port=embed_port, n_ctx=n_ctx, n_threads=n_threads, data_dir=str(data_dir),
                           log_dir=str(data_dir), lora_path=lora_path)
        self._stack: contextlib.ExitStack | None = None
        self.cfg: Mem0PeerConfig | None = None
        self.memory = None

    def __enter__(self) -> "Mem0Session":
        Path(self._serve["data_dir"]).mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            self.cfg = stack.enter_context(serve(**self._serve))
            self.memory = open_memory(self.cfg)
            stack.callback(close_memory, self.memory)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def run(self, task, method: str, *, seed: int, n_max: int, top_k: int,
            n_distractors: int | None = None) -> Mem0Result:
        """One task through Mem0 (``method`` in ``PEER_METHODS``). Whatever a killed earlier
        run left under this task's user_id is deleted first, so the task starts empty."""
        if method not in PEER_METHODS:
            raise ValueError(f"{method!r} is not a Mem0 peer method ({', '.join(PEER_METHODS)})")
        if self.memory is None:
            raise RuntimeError("Mem0Session.run outside its `with` block")
        self.memory.delete_all(user_id=user_id(task.id, method, seed))
        from dataclasses import replace

        cfg = replace(self.cfg, infer=PEER_METHODS[method], seed=seed, n_max=n_max, top_k=top_k,
                      n_distractors=n_distractors)
        return run_task(task, cfg, self.memory)


def peer_metrics(result: Mem0Result) -> dict:
    """The report's per-episode numbers for one Mem0 task (the harness's ``episode_metrics``
    shape): its LLM calls count as steps, its ADD events as Add_memory calls."""
    return {"em": result.exact_match, "f1": result.f1, "mq": result.memory_quality,
            "prompt_tokens": result.prompt_tokens,
            "tool_calls": {"Add_memory": result.n_added} if result.n_added else {},
            "failed_calls": 0, "steps": result.llm_calls, "wall_s": result.wall_s,
            "answered": bool(result.answer), "n_max_exceeded": False, "reward": None}


def make_peer_record(bench: str, task, result: Mem0Result, *, seed: int, policy: str) -> dict:
    """What one Mem0 episode file holds (the QA record shape; ``episode`` is the ``Mem0Result``)."""
    from ..rewards import RewardConfig

    return {**record_header(bench, result.method, task.id, seed=seed, policy=policy), "peer": "mem0",
            "judges": {**JUDGE_NAMES,
                       "mq": f"coverage@{RewardConfig().coverage_threshold} of the gold facts by Mem0's final memories",
                       "tool_calls": PEER_JUDGE},
            "metrics": peer_metrics(result), "task": task.to_dict(), "episode": result.to_dict()}


def why_unavailable() -> str | None:
    """None when the peer can run here, else the one line that says why not (the extra is
    missing, or OPENROUTER_API_KEY would send mem0's LLM calls off the machine)."""
    from importlib.util import find_spec

    missing = [m for m in ("mem0", "qdrant_client", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                           "pydantic_settings") if find_spec(m) is None]
    if missing:
        return f"{MEM0_EXTRA_HINT} (missing: {', '.join(missing)})"
    if os.environ.get("OPENROUTER_API_KEY"):
        return ("OPENROUTER_API_KEY is set: mem0 would send its LLM calls to openrouter.ai instead of the "
                "local server; unset it to run the Mem0 peer")
    return None
