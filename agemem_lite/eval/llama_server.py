"""``python -m llama_cpp.server`` under ``llama_open``'s rule for AMX CPUs (no repacked weights
where ggml's AMX kernels crash), for the Mem0 peer's servers: the server builds its ``Llama``
itself, so the rule has to hold for the whole process. Same arguments as llama_cpp.server."""

from __future__ import annotations

import runpy

from ..llama_open import model_params, repack_weights


def main() -> None:
    with model_params(repack_weights()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
