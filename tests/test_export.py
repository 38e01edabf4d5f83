"""train.export: torch policies and LoRAs back to GGUF, checked against torch's own logits.

Each round trip runs a fixed prompt (tokenised by llama.cpp) through the torch
model and through llama.cpp on the exported file, and compares the logits at
every position. SmolLM2's materialised HF folder is cached under
``$AGEMEM_TRAIN_CACHE`` when set (reused across runs), else in a session tmp dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from agemem_lite.llama_open import open_llama  # noqa: E402

from agemem_lite import model_files  # noqa: E402
from agemem_lite.config import Settings  # noqa: E402
from agemem_lite.errors import ConfigError, ModelFileError  # noqa: E402
from train.base import load_model, materialise  # noqa: E402
from train.export import (export_adapter, export_merged, from_llamacpp_rows, import_adapter, quantize,  # noqa: E402
                          register, to_llamacpp_rows)

PROMPT = b"The quick brown fox jumps over the lazy dog, and then the assistant writes down what it remembers."
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# f16 weights vs torch's f32 ones: llama.cpp's f16 matmuls round activations too.
# Measured here (20 tokens, max |diff| over every position and the whole vocabulary;
# last position in brackets): SmolLM2 f16 0.054 (0.018), SmolLM2 + LoRA over its f16
# export 0.083 (0.020), the same LoRA merged 0.068 (0.030); Qwen2.5-Coder-0.5B f16 0.025
# (0.013), Qwen + LoRA 0.026 (0.017). The LoRAs move the logits by 3.8 and 9.4.
F16_TOL = 0.2
Q8_TOL = 3.0


@pytest.fixture(scope="session")
def train_cache(data_dir):
    """Where GRPOTrainer materialises too (``<data dir>/cache/train``), so the suite converts each model once."""
    env = os.environ.get("AGEMEM_TRAIN_CACHE")
    return Path(env) if env else data_dir / "cache" / "train"


@pytest.fixture(scope="session")
def smol_gguf(settings):
    """The registry's SmolLM2 file in the session data dir (the path GRPOTrainer resolves)."""
    return model_files.resolve(settings, "smollm2-135m")


@pytest.fixture(scope="session")
def smol_folder(smol_gguf, train_cache):
    return materialise(smol_gguf, train_cache)


@pytest.fixture(scope="session")
def smol_model(smol_folder):
    """SmolLM2 in torch; shared, so tests that add a LoRA load their own copy."""
    torch.set_num_threads(2)
    return load_model(smol_folder)


@pytest.fixture(scope="session")
def smol_f16(smol_model, smol_gguf, tmp_path_factory):
    return export_merged(smol_model, smol_gguf, tmp_path_factory.mktemp("export") / "smol-f16.gguf")


@pytest.fixture(scope="session")
def smol_f16_logits(smol_f16):
    """(tokens, llama.cpp logits) of the f16 export: the base that adapters are compared over."""
    return llama_logits(smol_f16)


def llama_logits(path: Path, lora: Path | None = None) -> tuple[list[int], np.ndarray]:
    """PROMPT's tokens and llama.cpp's logits at every position."""
    llm = open_llama(path, lora_path=str(lora) if lora else None, logits_all=True,
                     n_ctx=256, n_threads=2, verbose=False)
    try:
        tokens = llm.tokenize(PROMPT, add_bos=True)
        llm.eval(tokens)
        return tokens, np.array(llm.scores[:len(tokens)])
    finally:
        llm.close()


def torch_logits(model, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def diff(tag, a, b):
    d = float(np.abs(a - b).max())
    print(f"\nDIFF {tag}: all={d:.4f} last={float(np.abs(a[-1] - b[-1]).max()):.4f}")
    return d


def max_kl(ref: np.ndarray, ours: np.ndarray) -> float:
    """Largest KL(torch || llama.cpp) over the positions."""
    p, q = torch.log_softmax(torch.tensor(ref), -1), torch.log_softmax(torch.tensor(ours), -1)
    return float((p.exp() * (p - q)).sum(-1).max())


def assert_same_top5(ours: np.ndarray, ref: np.ndarray, tol: float = F16_TOL) -> None:
    """Same next token and the same 5 likeliest ids at the last position, up to near-ties:
    an id in only one top-5 must sit within ``tol`` of torch's 5th logit."""
    a, b = np.argsort(-ours[-1])[:5].tolist(), np.argsort(-ref[-1])[:5].tolist()
    assert a[0] == b[0]
    cut = ref[-1][b[-1]]
    assert all(abs(ref[-1][i] - cut) < tol for i in set(a) ^ set(b)), (a, b)


def gguf_reader(path):
    import gguf

    return gguf.GGUFReader(str(path))


def random_lora(model, seed: int = 0):
    """A LoRA on every block Linear layer with non-zero B (PEFT starts B at zero)."""
    torch.manual_seed(seed)  # PEFT draws A from the global generator
    pm = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return pm


def test_rope_row_order_inverts_transformers_reverse_permute():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    hf = np.arange(3 * 8 * 5, dtype=np.float32).reshape(24, 5)
    back = LlamaTensorProcessor()._reverse_permute_weights(to_llamacpp_rows(hf, 3), 3)
    assert np.array_equal(back, hf)
    assert not np.array_equal(to_llamacpp_rows(hf, 3), hf)


def test_merged_f16_llama_matches_torch_logits(smol_f16, smol_f16_logits, smol_gguf, smol_model):
    tokens, ours = smol_f16_logits
    ref = torch_logits(smol_model, tokens)
    assert len(tokens) >= 20
    assert diff("f16", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)

    base, out = gguf_reader(smol_gguf), gguf_reader(smol_f16)
    assert [t.name for t in out.tensors] == [t.name for t in base.tensors]
    for key in ("tokenizer.chat_template", "tokenizer.ggml.merges", "llama.rope.freq_base"):
        assert out.fields[key].contents() == base.fields[key].contents(), key
    assert out.fields["general.file_type"].contents() == 1  # MOSTLY_F16
    assert {t.tensor_type.name for t in out.tensors} == {"F16", "F32"}


def test_merged_q8_0_loads_and_stays_close(smol_model, smol_gguf, smol_f16, tmp_path):
    """q8_0 logits differ more because llama.cpp also quantises the activations for Q8_0
    matmuls: measured max |diff| 1.86 (last position 0.55), max KL 0.042 -- llama.cpp's own
    quantize(f16 -> q8_0) of the same model measured 2.58 and 0.037."""
    import gguf

    q8 = export_merged(smol_model, smol_gguf, tmp_path / "smol-q8.gguf", outtype="q8_0")
    tokens, ours = llama_logits(q8)
    ref = torch_logits(smol_model, tokens)
    assert diff("q8", ours, ref) < Q8_TOL
    assert max_kl(ref, ours) < 0.1
    assert ours[-1].argmax() == ref[-1].argmax()
    r = gguf_reader(q8)
    assert r.fields["general.file_type"].contents() == 7  # MOSTLY_Q8_0
    assert q8.stat().st_size < 0.6 * smol_f16.stat().st_size
    assert not list(tmp_path.glob("*.tmp"))

    # The bytes decode to the torch weights (llama.cpp's q row order) within half a Q8_0
    # step, plus the f16 rounding of the block scale d (127 * 2^-11 of a step).
    q = next(t for t in r.tensors if t.name == "blk.3.attn_q.weight")
    assert q.tensor_type.name == "Q8_0"
    got = gguf.quants.dequantize(np.asarray(q.data), q.tensor_type)
    want = to_llamacpp_rows(smol_model.model.layers[3].self_attn.q_proj.weight.detach().numpy(), 9)
    step = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(got.reshape(-1, 32) - want.reshape(-1, 32)) <= step * 0.6)


def test_quantize_to_q4_k_m_generates_text(smol_f16, tmp_path):
    q4 = quantize(smol_f16, tmp_path / "smol-q4_k_m.gguf", "q4_k_m")
    assert model_files.check_gguf(q4).metadata["general.file_type"] == 15  # MOSTLY_Q4_K_M
    assert q4.stat().st_size < 0.5 * smol_f16.stat().st_size
    llm = open_llama(q4, n_ctx=256, n_threads=2, verbose=False)
    try:
        text = llm("The capital of France is", max_tokens=8, temperature=0.0)["choices"][0]["text"]
    finally:
        llm.close()
    assert text.strip()
    with pytest.raises(ConfigError, match="qtype"):
        quantize(smol_f16, tmp_path / "x.gguf", "q3_weird")


def test_adapter_llama_matches_torch_and_changes_logits(smol_folder, smol_gguf, smol_f16, smol_f16_logits,
                                                       tmp_path):
    """Compared over the f16 export of the base: llama.cpp's Q4_1 matmuls quantise the
    activations too (base Q4_1 vs torch: max |diff| 1.58), which would hide a wrong adapter."""
    _, base = smol_f16_logits
    pm = random_lora(load_model(smol_folder))
    adapter = export_adapter(pm, smol_gguf, tmp_path / "lora.gguf")
    tokens, ours = llama_logits(smol_f16, adapter)
    ref = torch_logits(pm, tokens)
    assert diff("f16", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)
    assert diff("vs-base", ours, base) > 1.0  # the adapter was applied (measured 3.8)

    r = gguf_reader(adapter)
    assert r.fields["general.type"].contents() == "adapter"
    assert r.fields["adapter.type"].contents() == "lora"
    assert r.fields["adapter.lora.alpha"].contents() == 16.0
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in r.tensors}
    assert len(shapes) == 30 * 7 * 2
    assert shapes["blk.0.attn_k.weight.lora_a"] == (576, 8)  # ggml order (in, r)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (8, 192)  # (r, out)

    # The same LoRA merged into a full file gives the same logits, and the caller's model keeps its LoRA.
    merged = export_merged(pm, smol_gguf, tmp_path / "merged.gguf")
    _, ours_merged = llama_logits(merged)
    assert diff("merged-peft", ours_merged, ref) < F16_TOL
    assert np.abs(torch_logits(pm, tokens) - ref).max() == 0.0


def test_adapter_refuses_what_gguf_cannot_hold(smol_folder, smol_gguf, tmp_path):
    pm = peft.get_peft_model(load_model(smol_folder), peft.LoraConfig(r=4, target_modules=["q_proj"]))
    pm.add_adapter("dora", peft.LoraConfig(r=4, target_modules=["v_proj"], use_dora=True))
    pm.add_adapter("rs", peft.LoraConfig(r=4, target_modules=["v_proj"], use_rslora=True))
    pm.add_adapter("head", peft.LoraConfig(r=4, target_modules=["lm_head"]))
    with pytest.raises(ConfigError, match="use_dora"):
        export_adapter(pm, smol_gguf, tmp_path / "a.gguf", adapter="dora")
    with pytest.raises(ConfigError, match="use_rslora"):
        export_adapter(pm, smol_gguf, tmp_path / "a.gguf", adapter="rs")
    with pytest.raises(ConfigError, match="lm_head"):
        export_adapter(pm, smol_gguf, tmp_path / "a.gguf", adapter="head")
    assert not list(tmp_path.iterdir())


def lora_tensors(pm) -> dict:
    return {k: v.detach().clone() for k, v in pm.named_parameters() if "lora_" in k}


def test_import_adapter_inverts_export(smol_folder, smol_gguf, tmp_path):
    """SmolLM2 is a ``llama`` GGUF, so q/k LoRA rows go through the rope permutation and back."""
    hf = np.arange(3 * 8 * 5, dtype=np.float32).reshape(24, 5)
    assert np.array_equal(from_llamacpp_rows(to_llamacpp_rows(hf, 3), 3), hf)
    src = random_lora(load_model(smol_folder), seed=2)
    want = lora_tensors(src)
    f32 = export_adapter(src, smol_gguf, tmp_path / "a32.gguf", check=False)
    f16 = export_adapter(src, smol_gguf, tmp_path / "a16.gguf", dtype="f16", check=False)

    fresh = random_lora(load_model(smol_folder), seed=3)   # other A and B: the import must overwrite both
    assert any(not torch.equal(want[k], v) for k, v in lora_tensors(fresh).items())
    assert import_adapter(fresh, f32, smol_gguf) == 30 * 7
    got = lora_tensors(fresh)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)

    import_adapter(fresh, f16, smol_gguf)
    got = lora_tensors(fresh)
    assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-3
    tokens = list(range(1, 20))
    assert np.abs(torch_logits(fresh, tokens) - torch_logits(src, tokens)).max() < 0.05


def test_import_adapter_refuses_an_adapter_that_does_not_fit(smol_folder, smol_gguf, tmp_path):
    adapter = export_adapter(random_lora(load_model(smol_folder)), smol_gguf, tmp_path / "a.gguf", check=False)
    pm = random_lora(load_model(smol_folder))
    with pytest.raises(ModelFileError, match="not a GGUF LoRA adapter"):
        import_adapter(pm, smol_gguf, smol_gguf)
    with pytest.raises(ModelFileError, match="not found"):
        import_adapter(pm, tmp_path / "missing.gguf", smol_gguf)
    cases = [(peft.LoraConfig(r=4, lora_alpha=16, target_modules=TARGETS), "another rank"),
             (peft.LoraConfig(r=8, lora_alpha=32, target_modules=TARGETS), "lora_alpha=16"),
             (peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), "does not wrap"),
             (peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS + ["lm_head"]), "lm_head")]
    for cfg, message in cases:
        pm = peft.get_peft_model(load_model(smol_folder), cfg)
        before = lora_tensors(pm)
        with pytest.raises(ConfigError, match=message):
            import_adapter(pm, adapter, smol_gguf)
        assert all(torch.equal(before[k], v) for k, v in lora_tensors(pm).items())  # nothing half-written


def test_merged_refuses_a_model_missing_base_tensors(smol_folder, smol_gguf, tmp_path):
    model = load_model(smol_folder)
    model.model.layers = model.model.layers[:-1]  # a 29-block model against the 30-block base
    with pytest.raises(ModelFileError, match="blk.29"):
        export_merged(model, smol_gguf, tmp_path / "x.gguf")
    assert not list(tmp_path.iterdir())


def test_registered_export_is_listed_and_opens_as_policy(smol_f16, smol_gguf, tmp_path):
    from agemem_lite.assistant import open_policy

    s = Settings(data_dir=tmp_path, n_threads=2)
    spec = register(s, smol_f16, "smol-export")
    assert spec.role == "policy" and spec.chat_format == "gguf"
    rows = {r.spec.name: r for r in model_files.list_models(s)}
    assert rows["smol-export"].path == smol_f16.resolve() and rows["smol-export"].state == "verified"
    assert model_files.get_spec(s, "smol-export").sha256 == model_files.sha256_file(smol_f16)

    register(s, smol_gguf, "smol-export")  # a second register replaces the first
    assert model_files.model_path(s, model_files.get_spec(s, "smol-export")) == smol_gguf.resolve()
    assert [r.spec.name for r in model_files.list_models(s)].count("smol-export") == 1

    policy = open_policy(s, "smol-export")  # what `--policy smol-export` does
    policy.close()
    with pytest.raises(ModelFileError, match="built-in"):
        register(s, smol_f16, "smollm2-135m")
    with pytest.raises(ConfigError, match="name"):
        register(s, smol_f16, "bad name!")


@pytest.fixture(scope="module")
def qwen(settings, tmp_path_factory):
    """The default policy's GGUF, its torch model, its f16 export and that export's logits.

    Its 3.6 GB of folders are removed as soon as they are not needed.

    The GGUF is resolved into the session's data dir, so its materialised folder
    (keyed by path) could never be reused: it goes to a session tmp dir, not the cache."""
    gguf_path = model_files.resolve(settings, Settings(data_dir=settings.data_dir).policy)
    hf = tmp_path_factory.mktemp("qwen-hf")
    model = load_model(materialise(gguf_path, hf))
    shutil.rmtree(hf)  # 2.4 GB of fp32 safetensors, loaded: a CI disk need not hold them all suite long
    out = tmp_path_factory.mktemp("qwen")
    f16 = export_merged(model, gguf_path, out / "qwen-f16.gguf")
    yield gguf_path, model, f16, llama_logits(f16)
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.default_model
@pytest.mark.slow
def test_merged_f16_qwen2_matches_torch_logits(qwen):
    gguf_path, model, f16, (tokens, ours) = qwen
    ref = torch_logits(model, tokens)
    assert diff("f16", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)
    out = gguf_reader(f16)
    assert [t.name for t in out.tensors] == [t.name for t in gguf_reader(gguf_path).tensors]
    assert "output.weight" in {t.name for t in out.tensors}  # Qwen's untied lm_head


@pytest.mark.default_model
@pytest.mark.slow
def test_adapter_qwen2_matches_torch(qwen, tmp_path):
    gguf_path, model, f16, (_, base) = qwen
    pm = random_lora(model, seed=1)
    try:
        adapter = export_adapter(pm, gguf_path, tmp_path / "qwen-lora.gguf", dtype="f16")
        tokens, ours = llama_logits(f16, adapter)
        ref = torch_logits(pm, tokens)
    finally:
        pm.unload()  # the module fixture's model goes back to plain Linear layers
    assert diff("f16", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)
    assert diff("vs-base", ours, base) > 1.0
    assert {t.tensor_type.name for t in gguf_reader(adapter).tensors} == {"F16"}


@pytest.mark.default_model
@pytest.mark.slow
def test_shipped_adapter_imports_into_torch_with_llama_cpp_logits(qwen, tmp_path):
    """The shipped policy's GGUF LoRA, read back into PEFT (what ``init_adapter=...gguf`` does),
    computes in torch what llama.cpp computes with the file, and exports back to the same bytes:
    GRPO can start from it."""
    from models.registry import ADAPTERS_DIR, REGISTRY

    gguf_path, model, f16, (_, base) = qwen
    shipped = ADAPTERS_DIR / REGISTRY["agemem-0.5b"].adapter
    pm = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    try:
        assert import_adapter(pm, shipped, gguf_path) == 24 * 7
        again = export_adapter(pm, gguf_path, tmp_path / "again.gguf", dtype="f16", check=False)
        tokens, ours = llama_logits(f16, shipped)
        ref = torch_logits(pm, tokens)
    finally:
        pm.unload()
    assert again.read_bytes() == shipped.read_bytes()
    assert diff("shipped", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)
    assert diff("vs-base", ours, base) > 0.5


# -- a weighted sum of adapters (train.merge_adapters) ---------------------------------

def two_loras(smol_folder):
    """SmolLM2 with two random LoRAs on every block Linear layer: "default" and "b"."""
    pm = random_lora(load_model(smol_folder), seed=4)
    pm.add_adapter("b", peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if ".b." in name and "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if "lora_B" in name else 0.1))
    return pm


def test_average_of_adapters_matches_torch_with_both_active(smol_folder, smol_gguf, smol_f16, smol_f16_logits,
                                                          tmp_path):
    """The reference is PEFT itself: both adapters active, each scaled by its weight."""
    from peft.tuners.lora import LoraLayer

    from train.merge_adapters import merge_adapters

    pm = two_loras(smol_folder)
    a = export_adapter(pm, smol_gguf, tmp_path / "a.gguf", adapter="default", check=False)
    b = export_adapter(pm, smol_gguf, tmp_path / "b.gguf", adapter="b", check=False)
    report = merge_adapters([(a, 0.7), (b, 0.3)], tmp_path / "avg.gguf", smol_gguf, rank=16)
    assert report.rank == 16 and report.tensors == 30 * 7 * 2 and report.dropped_share_max < 1e-6

    pm.base_model.set_adapter(["default", "b"])
    for module in pm.modules():
        if isinstance(module, LoraLayer):
            module.set_scale("default", 0.7)
            module.set_scale("b", 0.3)
    tokens, ours = llama_logits(smol_f16, report.out)
    ref = torch_logits(pm, tokens)
    assert diff("avg", ours, ref) < F16_TOL
    assert_same_top5(ours, ref)
    _, only_a = llama_logits(smol_f16, a)
    assert diff("avg-vs-a", ours, only_a) > 0.5   # b's share is in the sum


def test_task_arithmetic_cancels_and_the_rank_cut_is_reported(smol_folder, smol_gguf, smol_f16, tmp_path):
    from train.export import read_lora
    from train.merge_adapters import merge_adapters

    pm = two_loras(smol_folder)
    a = export_adapter(pm, smol_gguf, tmp_path / "a.gguf", adapter="default", check=False)
    b = export_adapter(pm, smol_gguf, tmp_path / "b.gguf", adapter="b", check=False)
    back = merge_adapters([(a, 1), (b, 1), (b, -1)], tmp_path / "a-again.gguf", smol_gguf)
    assert back.rank == 8 and back.dropped_share_max < 1e-4
    want, got = read_lora(a), read_lora(back.out)
    for name, (wa, wb) in want.pairs.items():
        ga, gb = got.pairs[name]
        assert np.abs(gb @ ga - wb @ wa).max() <= 2e-3 * np.abs(wb @ wa).max()  # f16 storage
    _, ours = llama_logits(smol_f16, back.out)
    _, ref = llama_logits(smol_f16, a)
    assert diff("a-again", ours, ref) < F16_TOL   # measured 0.068: f16 rounding of the new factors

    # Two independent rank-8 deltas do not fit in rank 8: the cut is large and says so.
    cut = merge_adapters([(a, 0.5), (b, 0.5)], tmp_path / "cut.gguf", smol_gguf)
    assert cut.rank == 8 and cut.dropped_share_mean > 0.2


def test_an_adapter_without_alpha_is_scaled_by_one_when_loaded_and_merged(smol_folder, smol_gguf, smol_f16, tmp_path):
    """llama.cpp reads alpha 0 (or none) as scale 1; the merge reads it the same way."""
    from train.export import read_lora, write_lora
    from train.merge_adapters import merge_adapters

    a = export_adapter(random_lora(load_model(smol_folder)), smol_gguf, tmp_path / "a.gguf", check=False)
    lora = read_lora(a)
    assert lora.alpha == 16 and lora.scale == 2.0
    tensors = [t for name, (fa, fb) in lora.pairs.items()
               for t in ((name + ".lora_a", fa), (name + ".lora_b", np.ascontiguousarray(fb * lora.scale)))]
    bare = tmp_path / "bare.gguf"
    write_lora(bare, lora.arch, 0.0, tensors)      # the same delta, with B carrying the scale
    assert read_lora(bare).scale == 1.0
    _, ref = llama_logits(smol_f16, a)
    _, loaded = llama_logits(smol_f16, bare)
    assert diff("bare", loaded, ref) < F16_TOL
    merged = merge_adapters([(bare, 0.5), (a, 0.5)], tmp_path / "m.gguf", smol_gguf, rank=16)
    assert read_lora(merged.out).scale == 1.0 and merged.dropped_share_max < 1e-3
    _, ours = llama_logits(smol_f16, merged.out)
    assert diff("merged", ours, ref) < F16_TOL


def test_average_refuses_adapters_of_other_tensors(smol_folder, smol_gguf, tmp_path):
    from train.merge_adapters import merge_adapters

    full = export_adapter(random_lora(load_model(smol_folder)), smol_gguf, tmp_path / "full.gguf", check=False)
    q = peft.get_peft_model(load_model(smol_folder), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"]))
    q_only = export_adapter(q, smol_gguf, tmp_path / "q.gguf", check=False)
    out = tmp_path / "out.gguf"
    with pytest.raises(ModelFileError, match="adapts other tensors"):
        merge_adapters([(full, 0.5), (q_only, 0.5)], out, smol_gguf)
    with pytest.raises(ModelFileError, match="not a GGUF LoRA adapter"):
        merge_adapters([(full, 0.5), (smol_gguf, 0.5)], out, smol_gguf)
    with pytest.raises(ConfigError, match="no adapters"):
        merge_adapters([], out, smol_gguf)
    assert not out.exists() and not out.with_name("out.gguf.tmp").exists()
