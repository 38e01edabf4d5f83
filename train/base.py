"""A trainable torch copy of a GGUF policy, made offline (LANDSCAPE "Conversion paths").

Every policy in the registry is a GGUF file. ``transformers`` can de-quantise a
GGUF into a float torch model (``from_pretrained(dir, gguf_file=...)``), but that
takes ~30 s for the 0.5B default and it refuses ``save_pretrained`` on the
result. ``materialise`` therefore writes the de-quantised weights once as an
ordinary Hugging Face folder (safetensors + config.json without the GGUF
``quantization_config`` + tokenizer) keyed by the GGUF's identity; training,
the export round-trip and Unsloth (which needs an HF folder) load that folder.

Rollouts still run the GGUF itself under llama.cpp (with the LoRA as a GGUF
adapter, ``train.export``): the torch model is only for log-probabilities and
gradients, and both see the same token ids because transformers builds the
embedding rows from the GGUF's vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from agemem_lite.errors import ConfigError, ModelFileError

#: GGUF ``general.architecture`` -> the transformers class that loads it.
ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` of a GGUF file (one clear error if it is not one)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except (OSError, ValueError, KeyError) as e:
        raise ModelFileError(f"{path}: not a readable GGUF policy ({e})") from None


def resolve_base(settings, policy: str | Path) -> Path:
    """A registry name (``agemem models list``) or a path: the base policy's GGUF file.

    An HF folder is accepted too (``config.json`` inside): it is used directly."""
    p = Path(policy).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{p}: a folder base must be a Hugging Face model folder (config.json missing)")
        return p
    if p.suffix == ".gguf" or p.is_file():
        if not p.is_file():
            raise ModelFileError(f"base policy file not found: {p}")
        return p
    from agemem_lite import model_files

    spec = model_files.get_spec(settings, str(policy))
    if spec.role != "policy":
        raise ConfigError(f"{policy} is an {spec.role}, not a policy; pick one from `agemem models list`")
    return model_files.resolve(settings, str(policy))


def _identity(path: Path) -> str:
    st = path.stat()
    import transformers

    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def materialise(gguf_path: str | Path, cache_root: str | Path) -> Path:
    """The HF folder of ``gguf_path`` under ``cache_root`` (written on first use, atomically).

    Contents: ``model.safetensors`` (float32, de-quantised; ``lm_head`` dropped when
    tied), ``config.json`` (``architectures`` set, no ``quantization_config``),
    the tokenizer files, and ``source.json`` naming the GGUF it came from."""
    src = Path(gguf_path)
    if src.is_dir():
        return src
    arch = gguf_architecture(src)
    if arch not in ARCHITECTURES:
        raise ConfigError(f"{src.name}: architecture {arch!r} is not trainable here "
                          f"(supported: {', '.join(ARCHITECTURES)})")
    out = Path(cache_root) / f"{src.stem}-{_identity(src)}"
    if (out / "source.json").is_file():
        return out
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [ARCHITECTURES[arch]]
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(str(tmp))
    (tmp / "source.json").write_text(json.dumps({"gguf": str(src.resolve()), "architecture": arch}))
    del model, state
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load_model(folder: str | Path, *, dtype=None):
    """The float torch model of an HF folder (``materialise``'s output), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or torch.float32)
    model.eval()
    return model


def source_gguf(folder: str | Path) -> Path | None:
    """The GGUF a materialised folder was made from (None for a user's HF folder)."""
    meta = Path(folder) / "source.json"
    if not meta.is_file():
        return None
    return Path(json.loads(meta.read_text())["gguf"])


__all__ = ["ARCHITECTURES", "gguf_architecture", "resolve_base", "materialise", "load_model", "source_gguf"]
