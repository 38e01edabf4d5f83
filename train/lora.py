"""The trainable policy: LoRA adapters on the base model, and completion log-probs.

One code path for both machines: on CPU the base is the float torch model of
``train.base`` with PEFT adapters; on a CUDA GPU, when Unsloth is installed (or
asked for), ``unsloth.FastLanguageModel`` loads the same HF folder in 4-bit and
adds the adapters. Either way the result is a ``peft.PeftModel``: the trainer,
the reference policy (``disable_adapter()``) and the export code do not care
which. Unsloth is imported only on that path: it refuses to import without an
accelerator.
"""

from __future__ import annotations

import contextlib
import os

from agemem_lite.errors import ConfigError


def pick_device(cfg) -> str:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def wants_unsloth(cfg, device: str) -> bool:
    if cfg.unsloth == "off" or device != "cuda":
        if cfg.unsloth == "on" and device != "cuda":
            raise ConfigError("unsloth='on' needs a CUDA GPU; on CPU the PEFT path is used (unsloth='auto')")
        return False
    if cfg.unsloth == "on":
        return True
    import importlib.util

    return importlib.util.find_spec("unsloth") is not None


def load_trainable(folder, cfg, device: str):
    """(PeftModel, backend) with fresh adapters (B = 0, so it starts as the base policy)."""
    import torch

    torch.manual_seed(cfg.seed)
    if wants_unsloth(cfg, device):
        # Unsloth fuses the loss and returns no logits unless asked; GRPO needs log-probs.
        os.environ.setdefault("UNSLOTH_RETURN_LOGITS", "1")
        try:
            from unsloth import FastLanguageModel
        except Exception as e:   # noqa: BLE001 - unsloth raises plain Exceptions without a GPU
            raise ConfigError(f"unsloth could not be imported ({e}); install the 'unsloth' extra "
                              "or set unsloth='off'") from None
        model, _ = FastLanguageModel.from_pretrained(str(folder), max_seq_length=cfg.n_ctx,
                                                     load_in_4bit=True, dtype=None)
        model = FastLanguageModel.get_peft_model(
            model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
            target_modules=list(cfg.lora_targets), random_state=cfg.seed,
            use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False)
        return model, "unsloth-4bit"
    from peft import LoraConfig, get_peft_model

    from .base import load_model

    model = load_model(folder).to(device)
    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                             bias="none", target_modules=list(cfg.lora_targets),
                                             task_type="CAUSAL_LM"))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    return model, f"peft-{device}-fp32"


def trainable_parameters(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


#: CPU flags of a native bf16 matmul path (AVX-512 BF16, AMX). Without one, torch's bf16
#: autocast runs a slow fallback: on a 2-core AMD EPYC with AVX2 only (2026-12-02) a
#: 512x896 @ 896x896 matmul took 0.52 s in bf16 against 0.021 s in fp32, so the tiny CI
#: training run went from about a minute to over half an hour.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def bf16_autocast(wanted: bool, device: str) -> bool:
    """Whether to autocast to bf16: as asked on a GPU, and on a CPU only where it has a
    native bf16 path (``BF16_CPU_FLAGS``); elsewhere fp32 is both faster and exact."""
    from agemem_lite.llama_open import cpu_flags

    return wanted and (device != "cpu" or bool(cpu_flags() & BF16_CPU_FLAGS))


def autocast(device: str, bf16: bool):
    """bf16 autocast on ``device``, or nothing (``bf16`` False: fp32)."""
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def completion_logprobs(model, prompt_ids: list[int], completion_ids: list[int], *, device: str,
                        bf16: bool = True):
    """log π(completion token | everything before it), one value per completion token.

    Only the completion positions go through ``lm_head`` (``logits_to_keep``): a
    151,936-word vocabulary over a 2k-token prompt would be a 1.2 GB tensor."""
    import torch

    n = len(completion_ids)
    ids = torch.tensor([prompt_ids + completion_ids], device=device)
    with autocast(device, bf16):
        out = model(input_ids=ids, logits_to_keep=n + 1, use_cache=False)
    logits = out.logits[0, :-1].float()
    target = torch.tensor(completion_ids, device=device)
    return torch.log_softmax(logits, dim=-1).gather(-1, target[:, None]).squeeze(-1)


def adapter_state(model) -> dict:
    """The LoRA tensors only (what a checkpoint and the GGUF adapter need)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model, state: dict) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ConfigError(f"checkpoint adapter does not fit this model (unexpected: {unexpected[:3]})")


def set_threads(n: int) -> int:
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


__all__ = ["pick_device", "wants_unsloth", "load_trainable", "trainable_parameters", "completion_logprobs", "bf16_autocast", "autocast",
           "adapter_state", "load_adapter_state", "set_threads"]
