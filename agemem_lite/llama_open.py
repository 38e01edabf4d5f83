"""Opening a GGUF with llama-cpp-python on CPUs whose AMX kernels crash.

A llama-cpp-python built natively on an Intel CPU with AMX (Sapphire Rapids and later) moves
quantised weights into ggml's AMX buffer type, and on such a machine here (2026-11-25,
llama-cpp-python 0.3.36, a KVM guest that reports ``amx_tile``) every decode of more than one
token died with SIGSEGV in ``ggml_backend_amx_mul_mat``: the chat, the tests and training all
crashed at the first prompt. Loading with ``use_extra_bufts = false`` (llama.cpp's
``--no-repack``) keeps the weights in the plain CPU buffer, which runs the same model correctly.
``Llama`` does not expose that field, so ``open_llama`` sets it on the default model parameters
while the model loads.

Only CPUs that report AMX are affected, so only they lose the repacked layouts.
``AGEMEM_LLAMA_REPACK=1`` or ``=0`` forces the choice either way.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (Linux; elsewhere empty)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def cpu_has_amx(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True where the CPU flags list ``amx_tile``."""
    return "amx_tile" in cpu_flags(cpuinfo)


def repack_weights() -> bool:
    """Whether llama.cpp may move weights into its extra (repacked, AMX) buffer types."""
    forced = os.environ.get("AGEMEM_LLAMA_REPACK", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return not cpu_has_amx()


@contextlib.contextmanager
def model_params(use_extra_bufts: bool):
    """While the body runs, ``llama_model_default_params()`` (which ``Llama.__init__`` calls)
    returns parameters with ``use_extra_bufts`` set as asked."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params
    if not hasattr(default(), "use_extra_bufts"):   # an older llama.cpp: nothing to set
        yield
        return

    def params():
        p = default()
        p.use_extra_bufts = use_extra_bufts
        return p

    with _LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default


def open_llama(model_path: str | Path, **kwargs):
    """``llama_cpp.Llama(model_path, **kwargs)``, without repacked weights where AMX is present."""
    from llama_cpp import Llama

    with model_params(repack_weights()):
        return Llama(model_path=str(model_path), **kwargs)


__all__ = ["open_llama", "model_params", "repack_weights", "cpu_has_amx"]
