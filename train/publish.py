"""A finished run -> a registered policy (``agemem export``).

Rebuilds the run's LoRA model on the de-quantised base (the same HF folder the
run trained on), merges the adapter (``train.export.export_merged``), writes an
f16/q8_0 GGUF with the base's tokenizer and chat template, optionally quantises
it with llama.cpp (default q4_k_m, the size class of the default policy) and
registers it in the models registry, so ``agemem chat --policy NAME`` and
``agemem eval --policy NAME`` run it. The GGUF adapter alone is kept in the run
folder too (``best/adapter.gguf``) for llama.cpp's ``lora_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

from agemem_lite.errors import ConfigError


def checkpoint_dir(run_dir: str | Path, which: str = "best") -> Path:
    """``best``, ``latest`` or a ``checkpoints/`` folder name, as a folder holding adapter.safetensors."""
    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"{run}: not a training run folder (no config.toml)")
    if which == "best":
        d = run / "best"
        if not d.is_dir():   # no held-out evaluation ran: fall back to the newest checkpoint
            which = "latest"
    if which == "latest":
        latest = run / "checkpoints" / "latest"
        if not latest.is_file():
            raise ConfigError(f"{run}: no checkpoint yet")
        which = latest.read_text().strip()
    if which != "best":
        d = run / "checkpoints" / which
    if not (d / "adapter.safetensors").is_file():
        raise ConfigError(f"{d}: no adapter.safetensors (checkpoints: "
                          f"{', '.join(sorted(p.name for p in (run / 'checkpoints').glob('step-*')))})")
    return d


def load_run_model(settings, run_dir: str | Path, which: str = "best"):
    """(peft model with the checkpoint's adapter, base GGUF path, checkpoint folder) on CPU."""
    from safetensors.torch import load_file

    from .base import materialise, resolve_base
    from .config import TrainConfig
    from .lora import load_adapter_state, load_trainable

    run = Path(run_dir)
    d = checkpoint_dir(run, which)
    cfg = TrainConfig.load(run / "config.toml", {"device": "cpu", "unsloth": "off", "gradient_checkpointing": False})
    state = json.loads((d / "state.json").read_text())
    base = Path(state["base_gguf"]) if Path(state.get("base_gguf", "")).is_file() else resolve_base(settings, cfg.base)
    folder = materialise(base, settings.data_dir / "cache" / "train")
    model, _ = load_trainable(folder, cfg, "cpu")
    load_adapter_state(model, load_file(str(d / "adapter.safetensors")))
    return model, base, d


def export_run(settings, run_dir: str | Path, name: str, *, checkpoint: str = "best", outtype: str = "f16",
               quantize: str | None = "q4_k_m", out_dir: str | Path | None = None) -> Path:
    """Merge, write, quantise and register; returns the registered GGUF's path."""
    from . import export

    model, base, d = load_run_model(settings, run_dir, checkpoint)
    out = Path(out_dir) if out_dir else settings.models_dir / "trained"
    out.mkdir(parents=True, exist_ok=True)
    merged = export.export_merged(model, base, out / f"{name}.{outtype}.gguf", outtype=outtype)
    final = merged
    if quantize and quantize != outtype:
        final = export.quantize(merged, out / f"{name}.{quantize}.gguf", quantize)
        merged.unlink()
    export.register(settings, final, name)
    return final


__all__ = ["checkpoint_dir", "load_run_model", "export_run"]
