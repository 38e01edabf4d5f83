"""A GGUF policy served by llama-cpp-python (SPEC §3), torch-free.

Three details make a small local model usable here:
- Grammar: every step is decoded within the language of ``protocol.grammar``
  (structure under GBNF, free text stopped at tags), so it always parses into a
  think block plus one tool call or one answer.
- Tag spelling: where the vocabulary has ``<tool_call>`` as one special token
  (Qwen2.5; its embedding row is untrained, LANDSCAPE.md), we tokenize the tag as
  ordinary pieces ("<", "tool", "_call", ">") in prompts and ban the special id in
  generation. The model then sees and writes the tag the same way, which is what
  lets it copy the protocol from the prompt (measured: with the special token in
  the prompt it answered instead of calling a tool on every test turn).
- Prefix reuse: prompts are rendered by the model's own chat template from a
  stable prefix (system prompt + demonstrations); llama-cpp-python keeps the
  evaluated tokens and only evaluates the new suffix of the next prompt.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Callable

from .. import protocol
from ..errors import ModelFileError
from . import Completion

_KV_MAGIC = b"AGKV"
#: Streamed after a tool call that the token cap cut short; the call is not part of
#: ``Completion.text`` (which must parse), so a stream shows the partial call + this.
CUT_NOTICE = "\n[tool call cut at the token cap]\n"

#: Protocol tags that some vocabularies hold as single (untrained) special tokens.
SPELLED_TAGS = (protocol.CALL_OPEN, protocol.CALL_CLOSE)

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def chat_formatter(llm, *, add_generation_prompt: bool = True):
    """The model's own chat template (ChatML when the GGUF has none) as a formatter:
    ``formatter(messages=...).prompt`` is the prompt text."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def piece(tok: int) -> str:
        return llm.detokenize([tok], special=True).decode("utf-8", "replace") if tok >= 0 else ""

    template = llm.metadata.get("tokenizer.chat_template") or CHATML
    return Jinja2ChatFormatter(template, eos_token=piece(llm.token_eos()), bos_token=piece(llm.token_bos()),
                               add_generation_prompt=add_generation_prompt)


@contextlib.contextmanager
def _quiet_stderr():
    """llama.cpp prints load logs on fd 2 even with verbose=False on some builds."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def load_llama(path: str | Path, **kwargs):
    """Open a GGUF with llama.cpp, turning any failure into one ModelFileError line."""
    from ..llama_open import open_llama

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file not found: {p}")
    with p.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelFileError(f"{p} is not a GGUF file (bad magic bytes)")
    try:
        with _quiet_stderr():
            return open_llama(p, verbose=False, **kwargs)
    except (ValueError, RuntimeError, OSError) as e:
        raise ModelFileError(f"llama.cpp could not load {p.name}: {e} (file corrupt or truncated? "
                             "run 'agemem models verify')") from None


class LlamaPolicy:
    """The memory policy: chat template + grammar-constrained steps on a GGUF model."""

    def __init__(self, model_path: str | Path, *, name: str | None = None, n_ctx: int = 8192,
                 n_threads: int = 0, seed: int = 0, temperature: float = 0.0,
                 max_new_tokens: int = 384, think_tokens: int = 160,
                 think_kinds: tuple[str, ...] | None = None, tool_schemas: list[dict] | None = None,
                 lora_path: str | None = None):
        if max_new_tokens < 48:
            raise ValueError(f"max_new_tokens={max_new_tokens}: a step needs at least 48 tokens")
        kw = dict(n_ctx=n_ctx, seed=seed, n_threads=n_threads or os.cpu_count() or 2)
        if lora_path:
            kw["lora_path"] = str(lora_path)
        self.llm = load_llama(model_path, **kw)
        self.model_path = Path(model_path)
        self.lora_path = lora_path
        self.name = name or Path(model_path).stem
        self.n_ctx = n_ctx
        self.seed = seed
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.think_tokens = think_tokens
        self.think_kinds = think_kinds
        self.tool_schemas = tool_schemas or []
        self._grammars: dict[tuple, object] = {}
        self._spell = self._spelled_tags()
        self.banned = {ids[0]: -float("inf") for ids in self._spell.values()}
        self._last_prompt: list[int] = []
        self._tool_role = "tool" in (self.llm.metadata.get("tokenizer.chat_template") or CHATML)
        self._formatter = chat_formatter(self.llm)

    # -- tokens -------------------------------------------------------------------
    def _spelled_tags(self) -> dict[str, list[int]]:
        """Tags that tokenize to a single special token: spell them with ordinary tokens."""
        out = {}
        for tag in SPELLED_TAGS:
            ids = self.llm.tokenize(tag.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                out[tag] = ids
        return out

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokenize like the prompt does: template control tokens as specials, tags spelled."""
        if not self._spell:
            return self.llm.tokenize(text.encode(), add_bos=False, special=special)
        ids: list[int] = []
        pattern = "(" + "|".join(re.escape(t) for t in self._spell) + ")"
        for part in re.split(pattern, text):
            if not part:
                continue
            if part in self._spell:
                head = "</" if part.startswith("</") else "<"
                ids += self.llm.tokenize(head.encode(), add_bos=False, special=False)
                ids += self.llm.tokenize(part[len(head):].encode(), add_bos=False, special=False)
            else:
                ids += self.llm.tokenize(part.encode(), add_bos=False, special=special)
        return ids

    def count_tokens(self, text: str) -> int:
        """Tokens of a message body as the model will see it."""
        return len(self.tokenize(text, special=False)) if text else 0

    # -- prompts --------------------------------------------------------------------
    def render(self, messages: list[dict]) -> str:
        """The prompt text: the model's chat template with a generation prompt."""
        msgs = messages
        if not self._tool_role:
            msgs = [{"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
                    if m["role"] == "tool" else m for m in messages]
        return self._formatter(messages=msgs).prompt

    def _grammar(self, key: str, gbnf_fn):
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            with _quiet_stderr():
                self._grammars[key] = LlamaGrammar.from_string(gbnf_fn(), verbose=False)
        return self._grammars[key]

    def _action_grammar(self, allow_tools: bool):
        if not allow_tools or not self.tool_schemas:
            return None
        key = "action:" + ",".join(s["name"] for s in self.tool_schemas)
        return self._grammar(key, lambda: protocol.grammar(
            self.tool_schemas, think=False, answer_text=False))

    def use_tools(self, tool_schemas: list[dict]) -> None:
        """Decode calls only to these tools (the agent's subset): a method without
        Retrieve_memory must not be offered it by the grammar. Grammars are cached per subset."""
        self.tool_schemas = list(tool_schemas)

    # -- generation -----------------------------------------------------------------
    def _generate(self, tokens: list[int], *, grammar=None, max_tokens: int,
                  on_text: Callable[[str], None] | None, stop: list[str] | None = None
                  ) -> tuple[str, float | None, str]:
        t0, first, parts, finish = time.perf_counter(), None, [], "stop"
        stream = self.llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=self.temperature, seed=self.seed,
            grammar=grammar, logit_bias=self.banned or None, stream=True, stop=stop or [])
        for chunk in stream:
            choice = chunk["choices"][0]
            piece = choice.get("text") or ""
            if piece:
                if first is None:
                    first = time.perf_counter() - t0
                parts.append(piece)
                if on_text:
                    on_text(piece)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        return "".join(parts), first, finish

    def _reused(self, tokens: list[int]) -> int:
        n = 0
        for a, b in zip(self._last_prompt, tokens):
            if a != b:
                break
            n += 1
        return n

    def step(self, messages: list[dict], *, allow_tools: bool = True,
             on_text: Callable[[str], None] | None = None) -> Completion:
        """Generate one protocol step for the context ``messages``.

        The step is decoded in segments: fixed text is written by the runtime, the
        structural choices (the "Kind:" label, tool call vs answer, the tool-call
        JSON) under small grammars, and the free text (think, answer) without a
        grammar, stopped at the next tag. The result is exactly the language of
        ``protocol.grammar`` but free text runs at unconstrained speed: llama.cpp
        checks a grammar against the whole vocabulary at every token, which cost
        ~3x in tokens/s here. The think is capped at ``think_tokens``.
        """
        prompt = self.tokenize(self.render(messages))
        if len(prompt) + self.max_new_tokens > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt)} tokens + {self.max_new_tokens} new tokens "
                             f"exceeds n_ctx={self.n_ctx}")
        reused = self._reused(prompt)
        t0 = time.perf_counter()
        text, first, dropped = "", None, ""
        segments: list[list] = []   # [text, generated]: what training may put in the loss
        budget = self.max_new_tokens
        reserve = 8  # room for the closing tags the runtime writes

        def emit(fixed: str) -> None:
            nonlocal text, budget
            text += fixed
            segments.append([fixed, False])
            budget -= self.count_tokens(fixed)
            if on_text:
                on_text(fixed)

        def gen(*, grammar=None, stop=None, max_tokens=None, keep=reserve) -> tuple[str, str]:
            nonlocal text, first, budget
            n = min(budget - keep, max_tokens or budget)
            if n < 1:
                return "", "length"
            out, ttft, finish = self._generate(prompt + self.tokenize(text, special=False), grammar=grammar,
                                               max_tokens=n, on_text=on_text, stop=stop)
            if first is None and ttft is not None:
                first = time.perf_counter() - t0
            budget -= self.count_tokens(out)
            text += out
            if out:
                segments.append([out, True])
            return out, finish

        tags = [protocol.THINK_CLOSE, "<"]
        if self.think_kinds:
            emit(protocol.THINK_OPEN + protocol.KIND_PREFIX.rstrip())
            gen(grammar=self._grammar("kind", lambda: protocol.kind_grammar(self.think_kinds)))
        else:
            emit(protocol.THINK_OPEN)
        gen(stop=tags, max_tokens=self.think_tokens, keep=reserve + 16)
        if text.endswith(protocol.THINK_OPEN):
            emit("…")  # keep the think non-empty, as the grammar requires
        emit(protocol.THINK_CLOSE + "\n")
        action, finish = gen(grammar=self._action_grammar(True)) if allow_tools else ("", "")
        if action.startswith(protocol.CALL_OPEN) and not action.endswith(protocol.CALL_CLOSE):
            # The call was cut by the token cap: drop it and answer instead, so the
            # step still parses (a half-written call would be an invalid step).
            text = text[: len(text) - len(action)]
            segments.pop()
            dropped = action
            if on_text:  # the stream already showed the partial call: say it was dropped
                on_text(CUT_NOTICE)
            action = ""
        if not action.startswith(protocol.CALL_OPEN):
            if not action:
                emit(protocol.ANSWER_OPEN)
            answer, _ = gen(stop=[protocol.ANSWER_CLOSE, "<"], keep=4)
            if not answer.strip():
                emit("…")
            emit(protocol.ANSWER_CLOSE)
        self._last_prompt = prompt
        return Completion(text=text, prompt_tokens=len(prompt),
                          completion_tokens=len(self.tokenize(text, special=False)),
                          seconds=time.perf_counter() - t0, first_token_s=first,
                          reused_prompt_tokens=reused, finish_reason="length" if budget <= reserve else "stop",
                          extra={"segments": segments, **({"dropped_call": dropped} if dropped else {})})

    # -- prefix KV cache on disk -------------------------------------------------------
    def prefix_tokens(self, messages: list[dict]) -> list[int]:
        """Tokens of ``messages`` that every later prompt starts with.

        Found as the common prefix of two renderings with different next user turns,
        so it is right for any chat template (no guessing where a message ends)."""
        a = self.tokenize(self.render([*messages, {"role": "user", "content": "a"}]))
        b = self.tokenize(self.render([*messages, {"role": "user", "content": "b"}]))
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return a[:n]

    def _cache_key(self, tokens: list[int]) -> str:
        import hashlib

        import llama_cpp
        import numpy as np

        st = self.model_path.stat()
        ident = f"{self.model_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.n_ctx}|" \
                f"{self.lora_path}|{llama_cpp.__version__}".encode()
        return hashlib.sha256(ident + np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:32]

    def warm_prefix(self, messages: list[dict], cache_dir: str | Path | None = None) -> dict:
        """Evaluate the stable prompt prefix (system prompt + demonstrations) once.

        With ``cache_dir`` the prefix's KV state is kept on disk (a few tens of MB),
        so a new process — every ``agemem ask`` — starts from it instead of
        re-reading ~1.4k tokens (~10 s on 2 cores). A stale or corrupt file is
        ignored and rewritten: the key covers the model file, n_ctx, the adapter,
        the llama-cpp-python version and the prefix tokens."""
        import numpy as np
        from llama_cpp.llama import LlamaState

        tokens = self.prefix_tokens(messages)
        info = {"prefix_tokens": len(tokens), "cache": "off"}
        if not tokens:
            return info
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"prefix-{self._cache_key(tokens)}.kv"
            if path.is_file():
                try:
                    raw = path.read_bytes()
                    n = int.from_bytes(raw[4:8], "little")
                    if raw[:4] != _KV_MAGIC or n != len(tokens):
                        raise ValueError("bad header")
                    ids = np.zeros(self.n_ctx, dtype=np.intc)
                    ids[:n] = np.frombuffer(raw, dtype=np.int32, count=n, offset=8)
                    blob = raw[8 + 4 * n:]
                    # Past logits are never read: the next prompt always decodes at least one token.
                    state = LlamaState(input_ids=ids, scores=np.zeros((1, self.llm.n_vocab()), np.single),
                                       n_tokens=n, llama_state=blob, llama_state_size=len(blob), seed=self.seed)
                    self.llm.load_state(state)
                    self._last_prompt = tokens
                    return {**info, "cache": "hit"}
                except (ValueError, RuntimeError, OSError):
                    path.unlink(missing_ok=True)
                    self.llm.reset()
        self.llm.reset()
        self.llm.eval(tokens)
        self._last_prompt = tokens
        if path is None:
            return {**info, "cache": "off"}
        state = self.llm.save_state()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(_KV_MAGIC + len(tokens).to_bytes(4, "little"))
            f.write(np.asarray(tokens, dtype=np.int32).tobytes())
            f.write(state.llama_state)
        os.replace(tmp, path)
        return {**info, "cache": "miss"}

    def summarise(self, instruction: str, max_tokens: int = 200) -> str:
        """Free text for Summary_context, written by the same model (SPEC §2), with its LoRA
        adapter switched off: the adapter is trained to write protocol steps, and with it on the
        summaries copied transcript lines and tags (docs/training.md, "The summary text")."""
        prompt = self.render([{"role": "system", "content": "You write short, faithful summaries."},
                              {"role": "user", "content": instruction}])
        with self._adapter_off():
            text, _, _ = self._generate(self.tokenize(prompt), max_tokens=max_tokens, on_text=None)
        return text.strip()

    @contextlib.contextmanager
    def _adapter_off(self):
        """The base model inside the block; the adapter is set again after it, and the KV cache
        is dropped, since its tokens were computed without the adapter."""
        import ctypes

        import llama_cpp

        adapter = getattr(self.llm, "_lora_adapter", None)
        if adapter is None:
            yield
            return
        ctx = self.llm._ctx.ctx
        if llama_cpp.llama_set_adapters_lora(ctx, None, 0, None):
            raise RuntimeError("llama.cpp could not switch the LoRA adapter off")
        try:
            yield
        finally:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(self.llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales):
                raise RuntimeError("llama.cpp could not switch the LoRA adapter back on")
            self.llm.reset()
            self._last_prompt = []

    def close(self) -> None:
        """Free the model (avoids a noisy free at interpreter exit)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.close()
