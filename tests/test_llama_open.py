"""How llama.cpp models are opened: no repacked (AMX) weights on CPUs that report AMX."""

from __future__ import annotations

import llama_cpp.llama_cpp as lib
import pytest

from agemem_lite import llama_open
from agemem_lite.llama_open import cpu_has_amx, model_params, repack_weights

FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f"


@pytest.mark.parametrize("extra, expected", [(" amx_bf16 amx_tile amx_int8", True), ("", False),
                                             (" amx_tile_x", False)])
def test_amx_is_read_from_the_cpu_flags(tmp_path, extra, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Xeon\n{FLAGS}{extra}\n\nprocessor\t: 1\n{FLAGS}{extra}\n")
    assert cpu_has_amx(info) is expected


def test_no_cpuinfo_means_no_amx(tmp_path):
    assert cpu_has_amx(tmp_path / "missing") is False


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True)])
def test_the_environment_forces_the_choice(monkeypatch, value, expected):
    monkeypatch.setenv("AGEMEM_LLAMA_REPACK", value)
    assert repack_weights() is expected


def test_without_the_variable_the_cpu_decides(monkeypatch):
    monkeypatch.delenv("AGEMEM_LLAMA_REPACK", raising=False)
    monkeypatch.setattr(llama_open, "cpu_has_amx", lambda: True)
    assert repack_weights() is False
    monkeypatch.setattr(llama_open, "cpu_has_amx", lambda: False)
    assert repack_weights() is True


def test_the_default_parameters_are_changed_only_while_a_model_loads():
    default = lib.llama_model_default_params
    assert default().use_extra_bufts is True          # llama.cpp's own default
    with model_params(False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params is default
    with pytest.raises(RuntimeError), model_params(False):
        raise RuntimeError("a failed load")
    assert lib.llama_model_default_params is default


@pytest.mark.parametrize("value", ["0", "1"])
def test_a_policy_loads_with_the_chosen_setting(settings, monkeypatch, value):
    from agemem_lite.model_files import resolve
    from agemem_lite.policy.llama import load_llama

    monkeypatch.setenv("AGEMEM_LLAMA_REPACK", value)
    llm = load_llama(resolve(settings, "smollm2-135m"), n_ctx=256, n_threads=2)
    try:
        assert llm.model_params.use_extra_bufts is (value == "1")
    finally:
        llm.close()


def test_a_prompt_of_many_tokens_decodes_under_the_default_rule(settings, monkeypatch):
    """On a CPU with AMX this is the crash it prevents (SIGSEGV in ggml_backend_amx_mul_mat at
    the first decode of more than one token); elsewhere it decodes with repacked weights."""
    from agemem_lite.model_files import resolve
    from agemem_lite.policy.llama import load_llama

    monkeypatch.delenv("AGEMEM_LLAMA_REPACK", raising=False)
    llm = load_llama(resolve(settings, "smollm2-135m"), n_ctx=256, n_threads=2)
    try:
        prompt = "Here is a sentence with a good many tokens in it, so that llama.cpp decodes a batch:"
        assert len(llm.tokenize(prompt.encode())) > 16
        out = llm(prompt, max_tokens=4, temperature=0.0)["choices"][0]
        assert out["text"] and out["finish_reason"] in ("length", "stop")
    finally:
        llm.close()


def test_cpu_flags_are_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\n{FLAGS} avx512_bf16\n\nprocessor\t: 1\n{FLAGS}\n")
    assert llama_open.cpu_flags(info) == {"fpu", "vme", "sse", "sse2", "avx", "avx2", "avx512f", "avx512_bf16"}
    assert llama_open.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("flags, device, wanted, expected", [
    ({"avx2"}, "cpu", True, False),            # torch's bf16 fallback: ~25x slower than fp32 here
    ({"avx2", "avx512_bf16"}, "cpu", True, True),
    ({"amx_bf16", "amx_tile"}, "cpu", True, True),
    ({"avx2"}, "cuda", True, True),
    ({"amx_bf16"}, "cpu", False, False),
])
def test_bf16_autocast_only_where_the_device_has_a_native_path(monkeypatch, flags, device, wanted, expected):
    lora = pytest.importorskip("train.lora")
    monkeypatch.setattr(llama_open, "cpu_flags", lambda: frozenset(flags))
    assert lora.bf16_autocast(wanted, device) is expected
