"""``agemem train``: step-wise GRPO of the memory policy (SPEC §6), one compact loop.

Why not TRL's ``GRPOTrainer``: it scores one completion per prompt and assumes
the prompt is a fixed prefix. Here a rollout is a whole three-stage episode of
many steps whose contexts are rewritten by Summary/Filter; every step is its own
sample with its own prompt, and the advantage is the trajectory's, broadcast to
all its steps. That needs the episode runner in the loop, which TRL cannot
express, so the loop below does (rollout -> reward -> advantage -> loss) itself.

One GRPO step:
1. Rollouts under llama.cpp, with the decoding ``agemem chat`` uses (grammar,
   spelled tags, same prompts): the base GGUF plus the current LoRA written as a
   GGUF adapter (``train.export.export_adapter``). K episodes per task, each
   with its own sampling seed and an empty memory namespace.
2. Reward per trajectory (``rewards.trajectory_reward``, SPEC §5; ``reward =
   'answer_only'`` for the ablation), group advantages, groups without variance
   skipped (``train.grpo``).
3. Samples (``train.samples``), subsampled to ``max_samples_per_step``; loss =
   clipped ratio objective + β·KL to the reference (the same model with the
   adapters disabled), masked to the generated tokens; AdamW on the LoRA weights.

``rollouts = "decisions"`` swaps the episodes for single decision-set steps
(``train.decision_rollouts``): a group is K sampled steps on one train item,
rewarded by its label, and the held-out evaluation is greedy steps on held-out
items; the rest of the loop (advantages, samples, loss, checkpoints) is the same.

The run folder holds ``config.toml`` (resolved), ``log.jsonl`` (one line per
step and per held-out evaluation), ``checkpoints/step-NNNNNN/`` (adapter
safetensors, optimizer state, state.json; ``checkpoints/latest`` names the
newest), ``best/`` (the checkpoint with the best held-out reward, with its GGUF
adapter), ``eval/step-NNNNNN/`` (full harness output) and ``reward_curve.png``.
``resume=True`` continues from ``checkpoints/latest``: tasks, sampling seeds
and subsampling all derive from (seed, step), so a resumed run takes the same
path the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import resource
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from agemem_lite.config import Settings
from agemem_lite.errors import ConfigError

from .config import TrainConfig, dump_toml
from .grpo import sample_loss
from .samples import build_samples, curriculum_stages, subsample

Log = Callable[[str], None]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class GRPOTrainer:
    """A training run in ``out_dir`` (see the module docstring for the layout)."""

    def __init__(self, cfg: TrainConfig, settings: Settings, out_dir: str | Path, *, resume: bool = False,
                 log: Log | None = None, progress: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.log = log or (lambda s: None)
        self.progress = progress
        saved = self.out / "config.toml"
        if saved.exists() and not resume:
            raise ConfigError(f"{self.out} already holds a training run; pass --resume to continue it "
                              "or choose another --out")
        if resume and not saved.exists():
            raise ConfigError(f"{self.out}: nothing to resume (no config.toml)")
        if resume:
            old = TrainConfig.load(saved).to_dict()
            new = cfg.to_dict()
            diff = sorted(k for k in new if k != "steps" and old.get(k) != new.get(k))
            if diff:
                raise ConfigError(f"--resume with a different config ({', '.join(diff)}): a resumed run must "
                                  "keep its settings (only 'steps' may grow)")
        self.out.mkdir(parents=True, exist_ok=True)
        saved.write_text(dump_toml(cfg))
        self.rollout_settings = dataclasses.replace(
            settings, n_ctx=cfg.n_ctx, context_budget=min(settings.context_budget, cfg.n_ctx),
            max_new_tokens=cfg.max_new_tokens, think_tokens=cfg.think_tokens, guided=cfg.guided,
            temperature=cfg.temperature, n_threads=cfg.threads)
        self.settings = settings
        # the context budget and demonstrations follow the rollout settings unless the recipe sets them
        defaults = {"t_max": cfg.n_ctx, "demonstrations": cfg.guided}
        self.episode_cfg = cfg.episode_config(**{k: v for k, v in defaults.items() if k not in cfg.episode})
        self.step = 0
        self.best = None            # best held-out mean reward
        self.reference = None       # LoRA state of the KL reference; None = the base (adapters off)
        self._opened = False

    # -- setup -----------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._opened:
            return
        import torch

        from agemem_lite.embed import load_embedder
        from agemem_lite.eval.harness import build_tasks

        from .base import materialise, resolve_base, source_gguf
        from .lora import adapter_state, bf16_autocast, load_trainable, pick_device, set_threads, trainable_parameters

        cfg = self.cfg
        set_threads(cfg.threads)
        base = resolve_base(self.settings, cfg.base)
        folder = materialise(base, self.settings.data_dir / "cache" / "train")
        self.base_gguf = base if base.suffix == ".gguf" else source_gguf(folder)
        if self.base_gguf is None:
            raise ConfigError(f"{base}: rollouts run under llama.cpp and need the GGUF this folder was made "
                              "from; pass the GGUF (or a registry name) as base")
        self.device = pick_device(cfg)
        self.bf16 = bf16_autocast(cfg.bf16, self.device)
        self.log(f"base {self.base_gguf.name} -> {folder.name}; device {self.device}; "
                 f"{'bf16 autocast' if self.bf16 else 'fp32'}"
                 + (" (this CPU has no native bf16: avx512_bf16 / amx_bf16)" if cfg.bf16 and not self.bf16 else ""))
        init = Path(cfg.init_adapter) if cfg.init_adapter else None
        if cfg.warm_start:
            init = self._warm_start(folder)   # before the GRPO model exists: one model in memory at a time
        self.model, self.backend = load_trainable(folder, cfg, self.device)
        if init is not None:
            self._load_init_adapter(init)
            # The KL reference is the policy GRPO starts from. The base model (adapters off)
            # would pull a warm-started policy back towards it: k3 ~ 70 per token at step 1
            # of the default recipe, against a policy term of order 1.
            self.reference = adapter_state(self.model)
        self.params = trainable_parameters(self.model)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.embedder = load_embedder(self.settings)
        if cfg.rollouts == "decisions":
            self._open_decisions()
            self._opened = True
            return
        self.train_tasks = [t for b in cfg.benches
                            for t in build_tasks(b, cfg.n_train_tasks, cfg.train_seed, self.embedder,
                                                 n_distractors=self._n_distractors())]
        # interleave benches so every stretch of steps sees every task family
        per = [[t for t in self.train_tasks if t.source == s] for s in dict.fromkeys(t.source for t in self.train_tasks)]
        self.train_tasks = [t for group in zip(*per) for t in group] if len(per) > 1 else self.train_tasks
        random.Random(f"order:{cfg.seed}").shuffle(self.train_tasks)
        held = {t.id for b in cfg.heldout_benches for t in build_tasks(b, cfg.n_heldout, cfg.heldout_seed, self.embedder,
                                                                         n_distractors=self._n_distractors())}
        overlap = held & {t.id for t in self.train_tasks}
        if overlap:
            raise ConfigError(f"held-out tasks also in training ({sorted(overlap)[:3]}): use another train_seed")
        self._opened = True

    def _open_decisions(self) -> None:
        """``rollouts = "decisions"``: train-split items (wide wordings too) and held-out-split items;
        the two splits share no wording or entity (``agemem_lite.decisions``)."""
        from agemem_lite.decisions import CLASSES, DEFAULT_BUDGET, generate

        cfg = self.cfg
        self.train_tasks = generate(cfg.n_train_tasks, cfg.train_seed, "train", budget=cfg.decision_budget,
                                    classes=cfg.decision_classes or CLASSES, wide=True)
        random.Random(f"order:{cfg.seed}").shuffle(self.train_tasks)
        self.heldout_items = generate(cfg.n_heldout, cfg.heldout_seed, "heldout", budget=DEFAULT_BUDGET)

    def _warm_start(self, folder: Path) -> Path:
        """Supervised warm-start rounds (``train.warm_start``) into ``out/warm_start/round-N``,
        each continuing the adapter of the one before (the first: ``init_adapter``, if given);
        a finished round is not rerun."""
        from .warm_start import run_sft

        cfg = self.cfg
        prev = Path(cfg.init_adapter) if cfg.init_adapter else None
        for i, rnd in enumerate(cfg.warm_start_rounds(), 1):
            d = self.out / "warm_start" / f"round-{i}"
            if (d / "sft.json").is_file():
                self.log(f"warm start round {i} already done: {d}")
            else:
                shutil.rmtree(d, ignore_errors=True)
                summary = run_sft(self.base_gguf, folder, d, n_items=rnd["items"], seed=rnd["seed"],
                                  epochs=rnd["epochs"], lr=rnd["lr"], lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                  targets=list(cfg.lora_targets), long_share=rnd["long_share"],
                                  long_budget=rnd["long_budget"], max_tokens=rnd["max_tokens"],
                                  classes=rnd["classes"], init_adapter=prev, threads=cfg.threads, bf16=self.bf16,
                                  replay=rnd["replay"], stage2=rnd["stage2"], questions=rnd["questions"], question_seed=cfg.train_seed,
                                  question_retrieve=rnd["question_retrieve"], episodes=rnd["episodes"],
                                  pack=rnd["pack"], wide_long=rnd["wide_long"], long_think=rnd["long_think"],
                                  fact_think=rnd["fact_think"], context_usage=rnd["context_usage"],
                                  edit_replies=rnd["edit_replies"], worked_think=rnd["worked_think"],
                                  hotpot_questions=rnd["hotpot_questions"], two_facts=rnd["two_facts"],
                                  overviews=rnd["overviews"], settings=self.settings,
                                  log=self.log,
                                  progress=self.progress)
                self._append_log({"type": "warm_start", "round": i, **summary})
            prev = d / "adapter"
        return prev

    def _load_init_adapter(self, folder: Path) -> None:
        """A PEFT adapter folder, or a GGUF LoRA adapter (the shipped ``agemem-0.5b.lora.gguf``)."""
        from safetensors.torch import load_file

        from .lora import load_adapter_state

        if Path(folder).suffix == ".gguf":
            from .export import import_adapter

            n = import_adapter(self.model, folder, self.base_gguf)
            self.log(f"adapters initialised from {folder} ({n} layers)")
            return
        f = Path(folder) / "adapter_model.safetensors"
        if not f.is_file():
            raise ConfigError(f"init_adapter {folder}: no adapter_model.safetensors (a PEFT adapter folder)")
        conf = json.loads((Path(folder) / "adapter_config.json").read_text())
        if conf.get("r") != self.cfg.lora_r or conf.get("lora_alpha") != self.cfg.lora_alpha:
            raise ConfigError(f"init_adapter {folder}: r={conf.get('r')}, alpha={conf.get('lora_alpha')}; "
                              f"this run has lora_r={self.cfg.lora_r}, lora_alpha={self.cfg.lora_alpha}")
        load_adapter_state(self.model, load_file(str(f), device=self.device))
        self.log(f"adapters initialised from {folder}")

    def _n_distractors(self) -> int:
        c = self.episode_cfg
        return c.n_max * c.distractors_per_turn if c.n_distractors is None else c.n_distractors

    def _policy(self, adapter: Path | None):
        from agemem_lite.assistant import policy_options
        from agemem_lite.policy.llama import LlamaPolicy

        name = f"{self.base_gguf.stem}+grpo@{self.step}" if adapter else self.base_gguf.stem
        return LlamaPolicy(self.base_gguf, name=name, lora_path=str(adapter) if adapter else None,
                           **policy_options(self.rollout_settings))

    def _adapter_gguf(self, path: Path) -> Path | None:
        """The current LoRA as a llama.cpp adapter (None while it is still the base: B = 0)."""
        if all(float(p.detach().abs().max()) == 0.0 for n, p in self.model.named_parameters()
               if "lora_B" in n):
            return None
        from .export import export_adapter

        # f16: what ships (r 8 on the 0.5B model: ~8.8 MB); not loaded back here: the rollout
        # policy loads it next and fails with one clear line
        return export_adapter(self.model, self.base_gguf, path, dtype="f16", check=False)

    # -- checkpoints -------------------------------------------------------------------------------
    def _ckpt_dir(self, step: int) -> Path:
        return self.out / "checkpoints" / f"step-{step:06d}"

    def save(self) -> Path:
        import torch
        from safetensors.torch import save_file

        from .lora import adapter_state

        d = self._ckpt_dir(self.step)
        tmp = d.with_name(d.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(adapter_state(self.model), str(tmp / "adapter.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        _write_json(tmp / "state.json", {"step": self.step, "best": self.best, "backend": self.backend,
                                         "base_gguf": str(self.base_gguf), "lora_r": self.cfg.lora_r,
                                         "lora_alpha": self.cfg.lora_alpha,
                                         "lora_targets": list(self.cfg.lora_targets)})
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
        latest = self.out / "checkpoints" / "latest"
        latest.with_suffix(".tmp").write_text(d.name)
        os.replace(latest.with_suffix(".tmp"), latest)
        return d

    def _restore(self) -> None:
        import torch
        from safetensors.torch import load_file

        from .lora import load_adapter_state

        latest = self.out / "checkpoints" / "latest"
        if not latest.is_file():
            return
        d = self.out / "checkpoints" / latest.read_text().strip()
        load_adapter_state(self.model, load_file(str(d / "adapter.safetensors"), device=self.device))
        self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", map_location=self.device))
        state = json.loads((d / "state.json").read_text())
        self.step, self.best = state["step"], state.get("best")
        self.log(f"resumed from {d.name} (step {self.step})")

    def _append_log(self, rec: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    # -- one GRPO step -------------------------------------------------------------------------------
    def _tasks_for(self, step: int):
        n, tps = len(self.train_tasks), self.cfg.tasks_per_step
        return [self.train_tasks[((step - 1) * tps + i) % n] for i in range(tps)]

    def _sampling_seed(self, step: int, group: int, k: int) -> int:
        return (self.cfg.seed * 1_000_003 + step * 1009 + group * 101 + k) % (2**31 - 1)

    def _rollouts(self, step: int, policy) -> dict:
        from agemem_lite.episodes import run_episode
        from agemem_lite.memory.store import MemoryStore

        cfg = self.cfg
        if cfg.rollouts == "decisions":
            from .decision_rollouts import rollout_groups

            return rollout_groups(policy, self._tasks_for(step), cfg.k, lambda g, k: self._sampling_seed(step, g, k),
                                  guided=self.episode_cfg.demonstrations,
                                  context_usage=self.episode_cfg.context_usage)
        scratch = self.out / "scratch"
        scratch.mkdir(exist_ok=True)
        groups: dict = {}
        for gi, task in enumerate(self._tasks_for(step)):
            eps = []
            for k in range(cfg.k):
                db = scratch / "rollout.db"
                for p in scratch.glob("rollout.db*"):
                    p.unlink()
                store = MemoryStore(db, dim=getattr(self.embedder, "dim", 384), synchronous="NORMAL")
                try:
                    policy.seed = self._sampling_seed(step, gi, k)
                    ec = dataclasses.replace(self.episode_cfg, seed=k, today="2025-01-01")
                    eps.append(run_episode(policy, store, self.embedder, task, ec, settings=self.rollout_settings))
                finally:
                    store.close()
            groups[task.id] = eps
        return groups

    def _update(self, samples) -> dict:
        import torch

        from .lora import completion_logprobs

        cfg, model, dev = self.cfg, self.model, self.device
        bs = cfg.minibatch_size or len(samples)
        batches = [range(i, min(i + bs, len(samples))) for i in range(0, len(samples), bs)]
        n_opt_steps = cfg.updates_per_step * len(batches)
        masks = [torch.tensor(s.mask, device=dev) for s in samples]
        ref, old = [None] * len(samples), [None] * len(samples)
        with torch.no_grad():
            if cfg.beta > 0:
                with self._reference_weights():
                    ref = [completion_logprobs(model, s.prompt_ids, s.completion_ids, device=dev, bf16=self.bf16)
                           for s in samples]
            if n_opt_steps > 1:   # μ > 1 or minibatches: the sampling policy's log-probs, before any update
                old = [completion_logprobs(model, s.prompt_ids, s.completion_ids, device=dev, bf16=self.bf16)
                       for s in samples]
        stats, norms = [], []
        model.train()
        for _ in range(cfg.updates_per_step):
            for batch in batches:
                self.optimizer.zero_grad(set_to_none=True)
                for i in batch:
                    s = samples[i]
                    logp = completion_logprobs(model, s.prompt_ids, s.completion_ids, device=dev, bf16=self.bf16)
                    loss, st = sample_loss(logp, old[i] if old[i] is not None else logp.detach(), ref[i],
                                           masks[i], s.advantage, clip_eps=cfg.clip_eps, beta=cfg.beta)
                    (loss / len(batch)).backward()
                    stats.append(st)
                norms.append(float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)))
                self.optimizer.step()
        model.eval()
        return {"loss": _mean(s.loss for s in stats), "policy_loss": _mean(s.policy_loss for s in stats),
                "kl": _mean(s.kl for s in stats), "clip_frac": _mean(s.clip_frac for s in stats),
                "loss_tokens": sum(s.tokens for s in stats) // max(cfg.updates_per_step, 1),
                "grad_norm": _mean(norms), "optimizer_steps": n_opt_steps}

    @contextlib.contextmanager
    def _reference_weights(self):
        """The model as the KL reference: adapters off, or the initial adapter swapped in
        (a few MB copied each way; the optimizer's parameters stay the same tensors)."""
        if self.reference is None:
            with self.model.disable_adapter():
                yield
            return
        from .lora import adapter_state, load_adapter_state

        current = adapter_state(self.model)
        load_adapter_state(self.model, self.reference)
        try:
            yield
        finally:
            load_adapter_state(self.model, current)

    def train_step(self) -> dict:
        """Run GRPO step ``self.step + 1``; returns its log record."""
        cfg = self.cfg
        step = self.step + 1
        t0 = time.perf_counter()
        policy = self._policy(self._adapter_gguf(self.out / "adapter.gguf"))
        try:
            policy.temperature = cfg.temperature
            groups = self._rollouts(step, policy)
            stages = curriculum_stages(cfg.curriculum, step, cfg.steps, cfg.phase_fractions)
            samples, gstats = build_samples(groups, policy, eps=cfg.adv_eps, min_std=cfg.min_group_std,
                                             stages=stages)
        finally:
            policy.close()
        t_roll = time.perf_counter() - t0
        total = len(samples)
        samples = subsample(samples, cfg.max_samples_per_step, random.Random(f"sub:{cfg.seed}:{step}"))
        t1 = time.perf_counter()
        upd = self._update(samples) if samples else {"loss": None, "kl": None, "optimizer_steps": 0}
        t_upd = time.perf_counter() - t1
        self.step = step
        eps = [ep for g in groups.values() for ep in g]
        rewards = [ep.reward.total for ep in eps]
        calls = Counter()
        for ep in eps:
            calls.update(ep.tool_calls)
        rec = {"type": "step", "step": step, "stages": sorted(stages) if stages else "all",
               "reward_mean": _mean(rewards),
               "reward_std": (sum((r - _mean(rewards)) ** 2 for r in rewards) / max(len(rewards) - 1, 1)) ** 0.5,
               "task_score_mean": _mean(ep.reward.r_task for ep in eps),
               "groups": [{"task": g.task_id, "rewards": [round(r, 4) for r in g.rewards],
                           "skipped": g.skipped} for g in gstats],
               "tool_calls_per_episode": {k: v / len(eps) for k, v in sorted(calls.items())},
               "invalid_steps": sum(1 for ep in eps for s in ep.steps if s.kind == "invalid"),
               "steps_per_episode": _mean(len(ep.steps) for ep in eps),
               "n_samples": len(samples), "n_samples_total": total, **upd,
               "rollout_s": round(t_roll, 2), "update_s": round(t_upd, 2),
               "step_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(_peak_rss_mb())}
        if self.device == "cuda":
            import torch

            rec["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        self._append_log(rec)
        return rec

    # -- held-out evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Greedy episodes of the held-out tasks through the eval harness (method agemem)."""
        from agemem_lite.eval.harness import run_eval

        if self.cfg.n_heldout < 1 or (self.cfg.rollouts == "episodes" and not self.cfg.heldout_benches):
            return {}
        adapter = self._adapter_gguf(self.out / "eval-adapter.gguf")
        policy = self._policy(adapter)
        policy.temperature, policy.seed = 0.0, 0
        out = self.out / "eval" / f"step-{self.step:06d}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        if self.cfg.rollouts == "decisions":
            return self._evaluate_decisions(policy, adapter, out, t0)
        try:
            res = run_eval(policy, self.embedder, list(self.cfg.heldout_benches), ["agemem"], n=self.cfg.n_heldout,
                           seed=self.cfg.heldout_seed, out_dir=out, settings=self.rollout_settings,
                           config=self.episode_cfg, policy_name=policy.name)
        finally:
            policy.close()
        ms = [r["metrics"] for r in res.records]
        calls = Counter()
        for m in ms:
            calls.update(m["tool_calls"])
        rec = {"type": "eval", "step": self.step, "n": len(ms), "reward_mean": _mean(m["reward"] for m in ms),
               "f1": _mean(m["f1"] for m in ms), "em": _mean(m["em"] for m in ms), "mq": _mean(m["mq"] for m in ms),
               "answered": _mean(float(m["answered"]) for m in ms),
               "prompt_tokens": _mean(m["prompt_tokens"] for m in ms),
               "tool_calls_per_episode": {k: v / max(len(ms), 1) for k, v in sorted(calls.items())},
               "by_bench": {b: {"f1": _mean(r["metrics"]["f1"] for r in res.records if r["bench"] == b),
                                "reward": _mean(r["metrics"]["reward"] for r in res.records if r["bench"] == b)}
                            for b in dict.fromkeys(r["bench"] for r in res.records)},
               "eval_s": round(time.perf_counter() - t0, 1), "judge": "token F1 / EM vs gold; MQ coverage@0.6"}
        return self._log_eval(rec, adapter)

    def _evaluate_decisions(self, policy, adapter: Path | None, out: Path, t0: float) -> dict:
        """Greedy steps on the held-out-split items (``rollouts = "decisions"``)."""
        from .decision_rollouts import heldout_record, sample_step

        try:
            rolls = [sample_step(policy, it, guided=self.episode_cfg.demonstrations,
                                 context_usage=self.episode_cfg.context_usage) for it in self.heldout_items]
        finally:
            policy.close()
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "decisions.json", [{"id": r.item.id, "label": r.item.label, "action": r.action,
                                              "reward": r.reward.total, "completion": r.steps[0].completion}
                                             for r in rolls])
        rec = {"type": "eval", "step": self.step, **heldout_record(rolls), "eval_s": round(time.perf_counter() - t0, 1),
               "judge": "decision label (1 right action, 0.5 right action with the wrong id)"}
        return self._log_eval(rec, adapter)

    def _log_eval(self, rec: dict, adapter: Path | None) -> dict:
        """Log a held-out record; a better mean reward than any before makes this checkpoint ``best/``."""
        self._append_log(rec)
        if rec["reward_mean"] is not None and (self.best is None or rec["reward_mean"] > self.best):
            self.best = rec["reward_mean"]
            self._save_best(adapter)
        return rec

    def _save_best(self, adapter: Path | None) -> None:
        from safetensors.torch import save_file

        from .lora import adapter_state

        d = self.out / "best"
        tmp = self.out / "best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(adapter_state(self.model), str(tmp / "adapter.safetensors"))
        if adapter is not None:
            shutil.copy(adapter, tmp / "adapter.gguf")
        _write_json(tmp / "state.json", {"step": self.step, "heldout_reward": self.best,
                                         "base_gguf": str(self.base_gguf), "lora_r": self.cfg.lora_r,
                                         "lora_alpha": self.cfg.lora_alpha,
                                         "lora_targets": list(self.cfg.lora_targets)})
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)

    # -- the run --------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> dict:
        """Train to ``cfg.steps``; evaluate before the first step, every ``eval_every`` and at the end."""
        from tqdm import tqdm

        self._open()
        if resume:
            self._restore()
        cfg = self.cfg
        evals = []
        if cfg.eval_every and self.step == 0:
            evals.append(self.evaluate())
            self.log(_eval_line(evals[-1]))
        bar = tqdm(total=cfg.steps, initial=self.step, desc="GRPO", disable=not self.progress, dynamic_ncols=True)
        try:
            while self.step < cfg.steps:
                rec = self.train_step()
                bar.update(1)
                bar.set_postfix(reward=_fmt(rec["reward_mean"]), kl=_fmt(rec.get("kl")), step_s=rec["step_s"])
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                    evals.append(self.evaluate())
                    bar.write(_eval_line(evals[-1]))
            if not (self.out / "best").is_dir():   # no held-out evaluation ran: the final adapter is "best"
                self.save()
                self._save_best(self._adapter_gguf(self.out / "eval-adapter.gguf"))
        finally:
            bar.close()
            with contextlib.suppress(Exception):
                from .curve import plot_log

                plot_log(self.out / "log.jsonl", self.out / "reward_curve.png")
        return {"steps": self.step, "out": str(self.out), "best_heldout_reward": self.best,
                "evals": [e for e in evals if e]}

    def close(self) -> None:
        if self._opened:
            self.embedder.close()
            self._opened = False


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _eval_line(rec: dict) -> str:
    if not rec:
        return "held-out evaluation skipped"
    if "accuracy" in rec:
        return (f"held-out @ step {rec['step']}: reward {_fmt(rec['reward_mean'])}, right action "
                f"{_fmt(rec['accuracy'])} (n={rec['n']}; {', '.join(f'{c} {v}' for c, v in rec['per_class'].items())})")
    return (f"held-out @ step {rec['step']}: reward {_fmt(rec['reward_mean'])}, F1 {_fmt(rec['f1'])}, "
            f"EM {_fmt(rec['em'])}, MQ {_fmt(rec['mq'])}, answered {_fmt(rec['answered'])} (n={rec['n']})")


__all__ = ["GRPOTrainer"]
