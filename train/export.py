"""From a trained torch policy back to GGUF files that llama.cpp serves.

Training runs on a de-quantised HF copy of a registry GGUF (``train.base``);
chatting never imports torch, so whatever training produced must leave as GGUF:

- ``export_adapter``: the LoRA alone, as a llama.cpp GGUF LoRA adapter. Small
  (MBs) and applied at load over the *unchanged* base GGUF, which is what
  rollouts use between optimiser steps. ``import_adapter`` reads one back into
  a PEFT model, so training can continue from a shipped adapter.
- ``export_merged``: a full policy file (base + LoRA merged) that copies the
  base GGUF's metadata (tokenizer, chat template, hparams) and tensor layout,
  in f16 / q8_0 / f32.
- ``quantize``: llama.cpp's own quantiser (q4_k_m ...) over a merged export.
- ``register``: the result as a named policy in ``agemem models list``.

Both writers take the tensor table (names, order, shapes) from the base GGUF
rather than from a converter's idea of the architecture, so an export holds
exactly the tensors llama.cpp already loads for that base. Every file is
written to a temporary name, loaded back with llama-cpp-python, and only then
moved into place, so a path this module returns always loads.

One layout trap: for ``llama`` GGUFs, llama.cpp stores the q/k projection rows
permuted for its rope implementation, and transformers undoes that permutation
when it de-quantises a GGUF (``LlamaTensorProcessor``). The torch rows are in
HF order, so q/k rows (and a LoRA's ``B`` for q/k) are permuted back on the way
out. ``qwen2`` is stored unpermuted.
"""

from __future__ import annotations

import ctypes
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agemem_lite.errors import ConfigError, ModelFileError

# -- tables ------------------------------------------------------------------------

#: GGUF keys this module writes (the adapter's are llama.cpp's LoRA-adapter keys).
KEY_TYPE = "general.type"
KEY_FILE_TYPE = "general.file_type"
KEY_ALIGNMENT = "general.alignment"
KEY_ADAPTER_TYPE = "adapter.type"
KEY_LORA_ALPHA = "adapter.lora.alpha"

#: Base-GGUF keys not copied into a merged export: they describe how the *base file*
#: was stored (its quantisation, its imatrix), not the model.
DROPPED_KEY_PREFIXES = ("GGUF.", KEY_FILE_TYPE, "quantize.")

#: export_merged outtype -> (ggml type of 2-D weights, general.file_type).
#: 1-D tensors (norms, biases) are always F32, as llama.cpp's converter writes them.
OUTTYPES = {"f32": ("F32", "ALL_F32"), "f16": ("F16", "MOSTLY_F16"), "q8_0": ("Q8_0", "MOSTLY_Q8_0")}

#: quantize qtype -> llama_cpp ftype constant.
QUANT_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "f16": "LLAMA_FTYPE_MOSTLY_F16"}

#: Architectures whose GGUF stores q/k rows permuted, and the head-count key for each.
ROPE_PERMUTED = {"llama": {"attn_q": "attention.head_count", "attn_k": "attention.head_count_kv"}}

#: The only modules a GGUF LoRA adapter may target here: the block Linear layers.
LORA_MODULE_RE = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$")

#: PEFT wraps the HF model twice: ``base_model`` (LoraModel) then ``model``.
PEFT_PREFIX = "base_model.model."


# -- small helpers -----------------------------------------------------------------

def _reader(path: Path):
    import gguf

    if not Path(path).is_file():
        raise ModelFileError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(str(path))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable GGUF ({e})") from None


def _field_value(field):
    """(value, type, sub_type) of a reader field, in the form GGUFWriter packs.

    Strings stay bytes so a vocabulary with non-UTF-8 pieces copies unchanged."""
    from gguf import GGUFValueType as T

    vtype = field.types[0]
    if vtype == T.STRING:
        return bytes(field.parts[field.data[0]]), vtype, None
    if vtype != T.ARRAY:
        return field.parts[field.data[0]][0].item(), vtype, None
    sub = field.types[-1]
    if len(field.types) != 2:
        raise ModelFileError(f"{field.name}: nested GGUF arrays are not supported")
    if sub == T.STRING:
        return [bytes(field.parts[i]) for i in field.data], vtype, sub
    if not field.data:
        return [], vtype, sub
    return np.concatenate([field.parts[i] for i in field.data]).tolist(), vtype, sub


def _metadata(reader) -> dict:
    """Scalar and string metadata of a GGUF (arrays skipped: they are never needed here)."""
    from gguf import GGUFValueType as T

    return {name: _field_value(f)[0] for name, f in reader.fields.items() if f.types and f.types[0] != T.ARRAY}


def _architecture(meta: dict) -> str:
    arch = meta.get("general.architecture")
    return arch.decode() if isinstance(arch, bytes) else str(arch)


def _name_map(arch: str, meta: dict):
    """gguf-py's HF-name -> GGUF-name table for this architecture and block count."""
    import gguf

    by_name = {name: a for a, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        raise ConfigError(f"GGUF architecture {arch!r} is unknown to the installed gguf package")
    return gguf.get_tensor_name_map(by_name[arch], int(meta[f"{arch}.block_count"]))


def _gguf_name(tmap, hf_name: str) -> str | None:
    return tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))


def _rope_heads(arch: str, meta: dict, gguf_name: str) -> int | None:
    """Head count to permute ``gguf_name``'s rows by, or None when it is stored as is."""
    parts = gguf_name.split(".")
    key = ROPE_PERMUTED.get(arch, {}).get(parts[2] if len(parts) > 2 and parts[0] == "blk" else "")
    return int(meta[f"{arch}.{key}"]) if key else None


def to_llamacpp_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's rope layout to llama.cpp's.

    HF rotates the two halves of each head (rows ``[0:d/2]`` against ``[d/2:d]``);
    llama.cpp rotates adjacent pairs. transformers maps a GGUF head's rows
    ``(d/2, 2)`` -> ``(2, d/2)``; this is the inverse, ``(2, d/2)`` -> ``(d/2, 2)``."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _load_back(model_path: Path, lora_path: Path | None = None) -> None:
    """Load the written file with llama.cpp (and the adapter over its base): it must load."""
    from agemem_lite.llama_open import open_llama

    try:
        llm = open_llama(model_path, lora_path=str(lora_path) if lora_path else None,
                         n_ctx=16, n_threads=1, verbose=False)
    except (ValueError, RuntimeError) as e:
        what = lora_path or model_path
        raise ModelFileError(f"{what}: written, but llama.cpp cannot load it ({e})") from None
    llm.close()


@contextmanager
def _atomic(out: Path, lora_base: Path | None = None, check: bool = True):
    """Yield a temporary path next to ``out``; when the body is done, load it back
    (as an adapter over ``lora_base`` if given) and move it into place. On any
    error nothing is left behind and an existing ``out`` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        yield tmp
        if check:
            _load_back(*((tmp,) if lora_base is None else (lora_base, tmp)))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# -- the LoRA adapter ----------------------------------------------------------------

def _lora_config(peft_model, adapter: str, refused=("use_dora", "use_rslora", "lora_bias")):
    """The adapter's LoraConfig, refusing what the GGUF export cannot represent."""
    cfg = peft_model.peft_config[adapter]
    if str(getattr(cfg, "peft_type", "")) not in ("LORA", "PeftType.LORA"):
        raise ConfigError(f"adapter {adapter!r} is {cfg.peft_type}, not LoRA; only LoRA exports to GGUF")
    why = {"use_dora": "DoRA's magnitude vector", "use_rslora": "rsLoRA's alpha/sqrt(r) scale",
           "lora_bias": "a LoRA bias"}
    for flag in refused:
        if getattr(cfg, flag, False):
            raise ConfigError(f"{flag}=True: the GGUF export has no {why[flag]}; train with {flag}=False")
    if getattr(cfg, "modules_to_save", None):
        raise ConfigError(f"modules_to_save={cfg.modules_to_save}: a GGUF LoRA adapter carries only LoRA "
                          "matrices; train without modules_to_save")
    return cfg


def _lora_layers(peft_model, adapter: str):
    """(HF module name, LoRA layer) for every module the adapter wraps."""
    import torch
    from peft.tuners.lora import LoraLayer

    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        hf = name.removeprefix(PEFT_PREFIX)
        if not LORA_MODULE_RE.match(hf) or not isinstance(module.get_base_layer(), torch.nn.Linear):
            raise ConfigError(f"LoRA on {hf}: only the blocks' Linear layers (q,k,v,o,gate,up,down_proj) "
                              "export as a GGUF adapter")
        yield hf, module


def export_adapter(peft_model, base_gguf: str | Path, out_path: str | Path, *,
                   dtype: str = "f32", adapter: str | None = None, check: bool = True) -> Path:
    """Write ``peft_model``'s LoRA as a llama.cpp GGUF adapter for ``base_gguf``.

    ``Llama(model_path=base_gguf, lora_path=out_path)`` then computes what the
    torch model computes. llama.cpp scales each pair by ``alpha / r`` with one
    ``alpha`` per file; a layer whose PEFT scale differs (``alpha_pattern``,
    ``set_scale``) has the ratio folded into its ``B``. ``dtype``: "f32" or "f16".
    ``check=False`` skips loading it back (the trainer loads it right away anyway).
    """
    from peft import PeftModel

    if not isinstance(peft_model, PeftModel):
        raise TypeError(f"export_adapter needs a peft PeftModel, got {type(peft_model).__name__}")
    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype={dtype!r}: choose 'f32' or 'f16'")
    base_gguf, out = Path(base_gguf), Path(out_path)
    adapter = adapter or peft_model.active_adapter
    cfg = _lora_config(peft_model, adapter)
    reader = _reader(base_gguf)
    meta = _metadata(reader)
    arch = _architecture(meta)
    tmap = _name_map(arch, meta)
    base_shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}  # ggml order: (in, out)
    alpha = float(cfg.lora_alpha)

    tensors: list[tuple[str, np.ndarray]] = []
    for hf, module in _lora_layers(peft_model, adapter):
        name = _gguf_name(tmap, hf + ".weight")
        a = module.lora_A[adapter].weight.detach().float().cpu().numpy()  # (r, in)
        b = module.lora_B[adapter].weight.detach().float().cpu().numpy()  # (out, r)
        r = a.shape[0]
        if name not in base_shapes:
            raise ModelFileError(f"{base_gguf.name} has no tensor {name} for LoRA module {hf}")
        if base_shapes[name] != (a.shape[1], b.shape[0]):
            raise ModelFileError(f"{hf}: LoRA is {b.shape[0]}x{a.shape[1]} but {base_gguf.name}'s {name} is "
                                 f"{base_shapes[name][1]}x{base_shapes[name][0]}; was it trained on this base?")
        ratio = module.scaling[adapter] / (alpha / r)
        if abs(ratio - 1.0) > 1e-6:
            b = b * ratio
        heads = _rope_heads(arch, meta, name)
        if heads:
            b = to_llamacpp_rows(b, heads)
        np_dtype = np.float16 if dtype == "f16" else np.float32
        tensors += [(name + ".lora_a", a.astype(np_dtype)), (name + ".lora_b", np.ascontiguousarray(b, np_dtype))]
    if not tensors:
        raise ConfigError(f"adapter {adapter!r} wraps no Linear layer; nothing to export")

    with _atomic(out, lora_base=base_gguf, check=check) as tmp:
        write_lora(tmp, arch, alpha, tensors)
    return out


def write_lora(path: Path, arch: str, alpha: float, tensors: list[tuple[str, np.ndarray]]) -> None:
    """Write ``(name.lora_a|name.lora_b, array)`` pairs as a llama.cpp GGUF LoRA adapter."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    try:
        writer.add_type("adapter")
        writer.add_string(KEY_ADAPTER_TYPE, "lora")
        writer.add_float32(KEY_LORA_ALPHA, alpha)
        for name, t in tensors:
            writer.add_tensor(name, t)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def from_llamacpp_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of ``to_llamacpp_rows``: llama.cpp's rope row order back to HF's."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass(frozen=True)
class LoraFile:
    """One GGUF LoRA adapter read into numpy: ``pairs[gguf name] = (A (r, in), B (out, r))``,
    rows in llama.cpp's order."""

    path: Path
    arch: str
    alpha: float
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def rank(self) -> int:
        return next(iter(self.pairs.values()))[0].shape[0]

    @property
    def scale(self) -> float:
        """What llama.cpp multiplies each ``B @ A`` by: ``alpha / r``, or 1 where the file has no
        alpha (0 or missing, as some converters write it)."""
        return self.alpha / self.rank if self.alpha else 1.0


def read_lora(path: str | Path) -> LoraFile:
    """Read a GGUF LoRA adapter (as ``export_adapter`` or llama.cpp's converter writes it);
    a file that is not one, or holds an unpaired tensor, is a ``ModelFileError``."""
    path = Path(path)
    reader = _reader(path)
    meta = _metadata(reader)
    if meta.get(KEY_TYPE) not in (b"adapter", "adapter") or meta.get(KEY_ADAPTER_TYPE) not in (b"lora", "lora"):
        raise ModelFileError(f"{path}: not a GGUF LoRA adapter ({KEY_TYPE}={meta.get(KEY_TYPE)!r})")
    # copies: the file is mapped read-only, and torch wants writable arrays
    arrays = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    names = {n.removesuffix(".lora_a").removesuffix(".lora_b") for n in arrays}
    odd = sorted(n for n in names if n + ".lora_a" not in arrays or n + ".lora_b" not in arrays)
    if odd or not names:
        raise ModelFileError(f"{path}: {'unpaired LoRA tensors ' + str(odd[:2]) if odd else 'holds no LoRA pairs'}")
    pairs = {n: (arrays[n + ".lora_a"], arrays[n + ".lora_b"]) for n in sorted(names)}
    return LoraFile(path, _architecture(meta), float(meta.get(KEY_LORA_ALPHA, 0.0)), pairs)


def import_adapter(peft_model, adapter_path: str | Path, base_gguf: str | Path, *,
                   adapter: str | None = None) -> int:
    """Load a llama.cpp GGUF LoRA adapter into ``peft_model``'s LoRA weights (the
    inverse of ``export_adapter``), so training can continue from a shipped adapter
    such as ``models/adapters/agemem-0.5b.lora.gguf`` without its PEFT folder.

    The model's LoRA must have the file's rank and alpha and wrap exactly the
    layers the file holds; anything else is a ``ConfigError`` naming the mismatch.
    Returns the number of layers loaded."""
    import torch

    lora = read_lora(adapter_path)
    path, alpha = lora.path, lora.scale * lora.rank     # a file without alpha acts as alpha = r
    adapter = adapter or peft_model.active_adapter
    cfg = _lora_config(peft_model, adapter)
    if abs(alpha - float(cfg.lora_alpha)) > 1e-6:
        raise ConfigError(f"{path.name} has LoRA alpha {alpha:g}; this model's LoRA has "
                          f"lora_alpha={cfg.lora_alpha} (set lora_alpha={alpha:g})")
    base_meta = _metadata(_reader(Path(base_gguf)))
    arch = _architecture(base_meta)
    if lora.arch != arch:
        raise ConfigError(f"{path.name} is a {lora.arch} adapter; the base is {arch}")
    tmap = _name_map(arch, base_meta)
    used, pairs = set(), []   # everything is checked before any weight is written
    for hf, module in _lora_layers(peft_model, adapter):
        name = _gguf_name(tmap, hf + ".weight")
        if name not in lora.pairs:
            raise ConfigError(f"{path.name} has no LoRA for {hf}: train with the LoRA targets it was made with")
        a, b = lora.pairs[name]  # (r, in), (out, r)
        la, lb = module.lora_A[adapter].weight, module.lora_B[adapter].weight
        if a.shape != tuple(la.shape) or b.shape != tuple(lb.shape):
            raise ConfigError(f"{hf}: {path.name} holds A {a.shape}, B {b.shape}; this model's LoRA has "
                              f"A {tuple(la.shape)}, B {tuple(lb.shape)} (another rank or base)")
        # llama.cpp scales every pair by alpha / r; export folded any other PEFT scale into B
        ratio = module.scaling[adapter] / (alpha / a.shape[0])
        heads = _rope_heads(arch, base_meta, name)
        if heads:
            b = from_llamacpp_rows(b, heads)
        pairs += [(la, a), (lb, np.ascontiguousarray(b / ratio))]
        used.add(name)
    left = sorted(set(lora.pairs) - used)
    if left:
        raise ConfigError(f"{path.name} holds LoRA tensors this model's LoRA does not wrap ({left[:2]}...): "
                          "train with the LoRA targets it was made with")
    with torch.no_grad():
        for param, value in pairs:
            param.copy_(torch.from_numpy(value))
    return len(pairs) // 2


# -- the merged policy ---------------------------------------------------------------

def hf_state_dict(model) -> dict:
    """HF-named float tensors of ``model``; a PeftModel's active LoRA is merged in.

    Computes ``W + scale * B @ A`` (PEFT's ``get_delta_weight``) per wrapped layer
    instead of ``merge_and_unload`` on a deep copy: the caller's model is untouched,
    and only the wrapped layers' weights are copied, not the whole model."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return dict(model.state_dict())
    adapter = model.active_adapter
    # rsLoRA merges fine (its scale is in get_delta_weight); DoRA's rescaling is not.
    _lora_config(model, adapter, refused=("use_dora", "lora_bias"))
    state = {}
    for key, t in model.get_base_model().state_dict().items():
        if ".lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = t
    from peft.tuners.lora import LoraLayer

    for name, module in model.get_base_model().named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            key = name + ".weight"
            state[key] = state[key].float() + module.get_delta_weight(adapter).float().to(state[key].device)
    return state


def export_merged(model, base_gguf: str | Path, out_path: str | Path, outtype: str = "f16") -> Path:
    """Write ``model`` as a full GGUF policy laid out exactly like ``base_gguf``.

    Every metadata key of the base is copied except those describing its storage
    (``general.file_type``, ``quantize.*``); every base tensor is written, in the
    base's order, from the torch state dict. ``outtype``: "f16", "q8_0" or "f32"
    for 2-D weights (a row length that is not a multiple of the Q8_0 block stays
    F16). Tensors are converted and written one at a time, so peak memory is the
    model plus one tensor.
    """
    import gguf
    import torch

    if outtype not in OUTTYPES:
        raise ConfigError(f"outtype={outtype!r}: choose one of {', '.join(OUTTYPES)}")
    base_gguf, out = Path(base_gguf), Path(out_path)
    reader = _reader(base_gguf)
    meta = _metadata(reader)
    arch = _architecture(meta)
    tmap = _name_map(arch, meta)
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    base_names = {t.name for t in reader.tensors}

    by_gguf: dict = {}
    tied_head = None
    for key, t in hf_state_dict(model).items():
        name = _gguf_name(tmap, key)
        if name is None:
            raise ConfigError(f"{key}: no GGUF tensor name for it in a {arch!r} model; cannot export")
        if name not in base_names:
            if name == "output.weight" and tied:
                tied_head = t  # llama.cpp reuses token_embd; checked below to really be equal
                continue
            raise ModelFileError(f"{key} -> {name}: {base_gguf.name} has no such tensor; "
                                 "the export would drop it (is this the model's base?)")
        by_gguf[name] = t
    embd = by_gguf.get("token_embd.weight")
    if tied_head is not None and embd is not None and not (
            tied_head.data_ptr() == embd.data_ptr() or torch.equal(tied_head, embd)):
        raise ModelFileError(f"lm_head differs from the tied embeddings (a LoRA on lm_head?) but "
                             f"{base_gguf.name} has no output.weight to hold it")
    if "output.weight" in base_names and "output.weight" not in by_gguf and tied:
        by_gguf["output.weight"] = embd
    missing = [t.name for t in reader.tensors if by_gguf.get(t.name) is None]
    if missing:
        raise ModelFileError(f"the torch model has no tensor for {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''} of {base_gguf.name}")
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}  # numpy order
    for name, shape in shapes.items():
        if tuple(by_gguf[name].shape) != shape:
            raise ModelFileError(f"{name}: torch shape {tuple(by_gguf[name].shape)}, {base_gguf.name} has {shape}")

    Q = gguf.GGMLQuantizationType
    wtype, ftype = getattr(Q, OUTTYPES[outtype][0]), getattr(gguf.LlamaFileType, OUTTYPES[outtype][1])

    def storage(shape: tuple) -> "gguf.GGMLQuantizationType":
        qtype = wtype if len(shape) == 2 else Q.F32
        if qtype == Q.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            return Q.F16
        return qtype

    def convert(name: str, qtype) -> np.ndarray:
        w = by_gguf[name].detach().float().cpu().numpy()
        heads = _rope_heads(arch, meta, name)
        if heads:
            w = to_llamacpp_rows(w, heads)
        if qtype == Q.Q8_0:
            return gguf.quants.quantize(np.ascontiguousarray(w, np.float32), qtype)
        return np.ascontiguousarray(w, np.float16 if qtype == Q.F16 else np.float32)

    with _atomic(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        try:
            for name, field in reader.fields.items():
                if name == "general.architecture" or name.startswith(DROPPED_KEY_PREFIXES):
                    continue
                value, vtype, sub = _field_value(field)
                if vtype == gguf.GGUFValueType.ARRAY and not value:
                    continue  # GGUFWriter cannot write an empty array; llama.cpp treats it as absent
                if name == KEY_ALIGNMENT:
                    writer.data_alignment = int(value)
                writer.add_key_value(name, value, vtype, sub)
            writer.add_file_type(int(ftype))
            # Header, key/values and the tensor table first (shapes and byte sizes are known
            # without converting), then each tensor's bytes as it is converted.
            plan = []
            for name, shape in shapes.items():
                qtype = storage(shape)
                nbytes = gguf.quant_shape_to_byte_shape(shape, qtype)
                writer.add_tensor_info(name, nbytes, np.dtype(np.uint8), int(np.prod(nbytes)), raw_dtype=qtype)
                plan.append((name, qtype))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for name, qtype in plan:
                writer.write_tensor_data(convert(name, qtype).view(np.uint8))
        finally:
            writer.close()
    return out


# -- quantisation and registration ---------------------------------------------------------

def quantize(src_gguf: str | Path, out_path: str | Path, qtype: str = "q4_k_m") -> Path:
    """Quantise a GGUF (an f16 ``export_merged``) with llama.cpp's own quantiser.

    Rows too short for a k-quant (e.g. SmolLM2's 576) fall back to a type that
    fits, as llama.cpp decides; the result is loaded back before it is moved into place."""
    import llama_cpp

    if qtype not in QUANT_FTYPES:
        raise ConfigError(f"qtype={qtype!r}: choose one of {', '.join(QUANT_FTYPES)}")
    src, out = Path(src_gguf), Path(out_path)
    if not src.is_file():
        raise ModelFileError(f"GGUF to quantise not found: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[qtype])
    with _atomic(out) as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise ModelFileError(f"{src}: llama.cpp could not quantise it to {qtype} (error {rc})")
    return out


def register(settings, gguf_path: str | Path, name: str):
    """Register an exported policy as ``name`` (``agemem models list``, ``--policy NAME``).

    A thin wrapper over ``model_files.add``: the file stays where it is and is
    hashed now. Registering a name again replaces the earlier entry (re-exports
    after more training keep their name); built-in names are refused."""
    from agemem_lite import model_files

    path = Path(gguf_path)
    if model_files.check_gguf(path).metadata.get(KEY_TYPE) == "adapter":
        raise ModelFileError(f"{path} is a LoRA adapter, not a policy; register an export_merged file")
    try:
        return model_files.add(settings, path, name, role="policy")
    except ValueError as e:
        raise ConfigError(str(e)) from None


__all__ = ["export_adapter", "import_adapter", "read_lora", "write_lora", "export_merged", "quantize", "register", "hf_state_dict",
           "to_llamacpp_rows", "from_llamacpp_rows", "OUTTYPES", "QUANT_FTYPES"]
