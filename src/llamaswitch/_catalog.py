"""The model catalog: which GGUF models the models folder holds, and what each one is.

The folder may be flat or laid out the way llama.cpp's router expects, a model per
subfolder with its shards and its projector::

    models/
    ├── llama-3.2-1b-Q4_K_M.gguf
    ├── gemma-3-4b-it/
    │   ├── gemma-3-4b-it-Q8_0.gguf
    │   └── mmproj-F16.gguf                     -> projector_path of the model beside it
    └── Kimi-K2/
        ├── Kimi-K2-IQ1_S-00001-of-00003.gguf   -> one model: three shards, one entry
        ├── Kimi-K2-IQ1_S-00002-of-00003.gguf
        └── Kimi-K2-IQ1_S-00003-of-00003.gguf

Users name a model by its file name, its path relative to the folder, its name without
``.gguf``, its ``general.name`` or the name of the folder it sits alone in. Paths that
resolve outside the folder are refused unless ``allow_outside`` is set: the HTTP API takes
model paths from the network.

Every string in a :class:`ModelInfo` is valid Unicode. A file whose path is not valid
UTF-8 (its undecodable bytes reach Python as lone surrogates) is listed with an ``error``
and U+FFFD in place of those bytes, and is never resolved: its name could not be written
to a JSON answer, SQLite, a log or llama-server's command line.

A listing reads the header of every new or changed file, each within the GGUF reader's
CPU budget (0.5 s), so one crafted file costs little; :meth:`ModelCatalog.close` abandons
a long scan (thousands of new files) at the next file.

>>> import tempfile
>>> from llamaswitch.testing import write_tiny_model
>>> folder = Path(tempfile.mkdtemp())
>>> _ = write_tiny_model(folder / "sub" / "tiny.gguf", name="tiny")
>>> catalog = ModelCatalog(folder)
>>> [(m.relative_path, m.architecture, m.quantization) for m in catalog.list_models()]
[('sub/tiny.gguf', 'llama', 'F32')]
>>> catalog.resolve("tiny").relative_path
'sub/tiny.gguf'
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import attrs

from llamaswitch._errors import ModelNotFoundError, ModelPathError, ServiceClosedError
from llamaswitch._gguf import HEADER_CPU_BUDGET_S, GGUFError, GGUFHeader, read_header
from llamaswitch._text import encodable, scrub

__all__ = ["ModelCatalog", "ModelInfo", "outside_paths"]

logger = logging.getLogger(__name__)

# llama.cpp's gguf-split names shards "<prefix>-%05d-of-%05d.gguf".
_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
_PROJECTOR_PREFIX = "mmproj"
_GGUF_SUFFIX = ".gguf"
# Symlinked folders can form loops; ancestors are tracked, and this caps pathological
# (but loop-free) symlink fan-outs too.
_MAX_DEPTH = 32
_SUGGESTIONS = 3
_OUTSIDE_HINT = "set LLAMASWITCH_ALLOW_OUTSIDE_MODELS_DIR=true to allow it"
_NAME_NOT_UTF8 = (
    "file name is not valid UTF-8 (shown with U+FFFD for the bytes that are not): "
    "rename the file to use it"
)
_FOLDER_NOT_UTF8 = (
    "folder path is not valid UTF-8 (shown with U+FFFD for the bytes that are not): "
    "rename the folder to use it"
)


@attrs.frozen(kw_only=True)
class ModelInfo:
    """One model in the catalog.

    ``name``, ``path`` and ``size`` keep the seed API's wire names. For a sharded model
    ``name`` and ``path`` are the first shard's and ``size`` is the sum over its shards.
    When the file is not a GGUF model llama.cpp could read (corrupt, truncated, a shard
    missing), ``error`` says why and the header fields (``architecture`` through
    ``vocab_size``) are None.
    """

    name: str
    path: Path
    size: int
    #: POSIX-style path relative to the models folder (how users name models in
    #: subfolders); an absolute POSIX path for a model outside it.
    relative_path: str
    architecture: str | None = None
    #: ``general.name`` from the header.
    display_name: str | None = None
    parameter_count: int | None = None
    #: llama-quantize's name for ``general.file_type``, e.g. ``"Q4_K_M"``.
    quantization: str | None = None
    context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    #: Attention shape and experts, from the header (see :class:`GGUFHeader`): what the
    #: gateway's memory estimate needs.
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    expert_count: int | None = None
    vocab_size: int | None = None
    #: How many files the model is split into (1 when it is not split).
    shard_count: int = 1
    #: The shard files present, in order (the file itself when it is not split).
    shard_paths: tuple[Path, ...] = ()
    #: The multimodal projector (``mmproj*.gguf``) found beside the model.
    projector_path: Path | None = None
    error: str | None = None

    @classmethod
    def from_header(
        cls,
        header: GGUFHeader,
        *,
        path: Path,
        relative_path: str,
        size: int,
        shard_paths: Sequence[Path] = (),
        projector_path: Path | None = None,
        parameter_count: int | None = None,
    ) -> ModelInfo:
        """Describe a readable model from its (first shard's) header.

        ``parameter_count`` overrides the header's, for shards that split the tensors.
        """
        shards = tuple(shard_paths) or (path,)
        return cls(
            name=path.name,
            path=path,
            size=size,
            relative_path=relative_path,
            architecture=header.architecture,
            display_name=header.name,
            parameter_count=header.parameter_count if parameter_count is None else parameter_count,
            quantization=header.quantization,
            context_length=header.context_length,
            block_count=header.block_count,
            embedding_length=header.embedding_length,
            head_count=header.head_count,
            head_count_kv=header.head_count_kv,
            key_length=header.key_length,
            value_length=header.value_length,
            expert_count=header.expert_count,
            vocab_size=header.vocab_size,
            shard_count=len(shards),
            shard_paths=shards,
            projector_path=projector_path,
        )

    @classmethod
    def from_error(
        cls,
        error: str,
        *,
        path: Path,
        relative_path: str,
        size: int,
        shard_count: int = 1,
        shard_paths: Sequence[Path] = (),
        projector_path: Path | None = None,
    ) -> ModelInfo:
        """Describe a model file that cannot be used, and why."""
        return cls(
            name=path.name,
            path=path,
            size=size,
            relative_path=relative_path,
            shard_count=shard_count,
            shard_paths=tuple(shard_paths),
            projector_path=projector_path,
            error=error,
        )


class _File(NamedTuple):
    """A ``*.gguf`` file met while scanning; its strings are valid Unicode (see ``exact``)."""

    path: str  # absolute, as reached (through symlinks, not resolved)
    relative: str  # POSIX, relative to the models folder
    folder: str  # `relative`'s folder part, the grouping key
    name: str
    size: int
    # size, mtime_ns and inode: a rewritten or replaced file gets a new key.
    stamp: tuple[int, int, int]
    problem: str | None  # why the file cannot be used without reading it
    # False when the path on disk is not valid UTF-8 and the strings above are its
    # U+FFFD rendering: they may name another file (or none), so it is never used.
    exact: bool = True


def _checked(file: _File) -> _File:
    """``file``, or its U+FFFD rendering with an error when its path is not valid UTF-8."""
    if encodable(file.path):  # `relative`, `folder` and `name` are parts of `path`
        return file
    return file._replace(
        path=scrub(file.path),
        relative=scrub(file.relative),
        folder=scrub(file.folder),
        name=scrub(file.name),
        problem=_NAME_NOT_UTF8 if not encodable(file.name) else _FOLDER_NOT_UTF8,
        exact=False,
    )


class _Entry(NamedTuple):
    """A listed model, and whether its paths are exactly those on disk (it can be resolved)."""

    model: ModelInfo
    exact: bool


_HeaderOrError = GGUFHeader | str
_InfoInputs = tuple[_File, _HeaderOrError | None, Path | None]


class ModelCatalog:
    """The models in ``models_dir`` and its subfolders, read from their GGUF headers.

    Headers are cached by path, size, modification time and inode, so a second listing
    only ``stat``s the files. The catalog is safe to share between threads (the async API
    calls it through ``asyncio.to_thread``): one scan runs at a time, and a listing asked
    for meanwhile waits for it, then scans again (cheaply, the headers being cached).

    A header that takes more than ``header_budget_s`` of CPU time to read (0.5 s by
    default, ten times what Llama 3's vocabulary takes) is listed with an ``error``, so
    one file cannot hold the catalog for long. A folder of thousands of new files still
    takes a while to list the first time: :meth:`close` abandons that scan.

    ``allow_outside=True`` accepts model paths and symlinks that resolve outside
    ``models_dir`` (the ``LLAMASWITCH_ALLOW_OUTSIDE_MODELS_DIR`` setting).
    """

    def __init__(
        self,
        models_dir: str | os.PathLike[str],
        *,
        allow_outside: bool = False,
        header_budget_s: float = HEADER_CPU_BUDGET_S,
    ) -> None:
        self._models_dir = Path(models_dir).absolute()
        # For messages: the folder itself may not be valid UTF-8.
        self._shown_dir = scrub(str(self._models_dir))
        self._allow_outside = allow_outside
        self._header_budget_s = header_budget_s
        # Guards `_scanning` and `_closed`; the caches belong to the thread that scans.
        self._state = threading.Condition()
        self._scanning = False
        self._closed = False
        self._headers: dict[str, tuple[tuple[int, int, int], _HeaderOrError]] = {}
        # A model is a pure function of its file, header and projector; rebuilding a
        # thousand of them (Path parsing mostly) would double the time of a warm listing.
        self._infos: dict[str, tuple[_InfoInputs, ModelInfo]] = {}
        self._header_reads = 0

    @property
    def models_dir(self) -> Path:
        """The models folder, made absolute."""
        return self._models_dir

    @property
    def allow_outside(self) -> bool:
        """Whether paths resolving outside the models folder are accepted."""
        return self._allow_outside

    @property
    def header_reads(self) -> int:
        """How many GGUF headers this catalog has read from disk (cache misses)."""
        return self._header_reads

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Abandon the scan in progress and refuse every later one; returns at once.

        A service calls it first thing at shutdown, before it waits for its worker
        threads: the listing in progress stops before its next file (after at most one
        header read, itself bounded by the CPU budget) and raises ``ServiceClosedError``, and so
        do the listings waiting for it and any later :meth:`list_models` or
        :meth:`resolve`. It never returns a partial listing: missing models would look
        deleted. Calling it again does nothing.
        """
        with self._state:
            self._closed = True
            self._state.notify_all()

    def list_models(self) -> list[ModelInfo]:
        """Every model in the folder, sorted by relative path (case-insensitively first).

        Hidden files and folders (names starting with ``.``) are skipped; symlinks are
        followed, but one that resolves outside the folder is listed with an ``error``
        (a file) or not entered (a folder) unless ``allow_outside`` is set. A file that is
        not a readable GGUF, or whose path is not valid UTF-8, is listed with ``error``
        set. A missing folder lists nothing: ``llamaswitch doctor`` is where that is
        reported. Raises ``ServiceClosedError`` once the catalog is closed (see :meth:`close`).
        """
        return [entry.model for entry in self._list()]

    def _list(self) -> list[_Entry]:
        with self._scan_slot():
            root = str(self._models_dir)
            try:
                root_stat = os.stat(root)
                root_real = os.path.realpath(root)
            except OSError:
                return []
            files: list[_File] = []
            self._walk(
                root,
                "",
                root_real,
                frozenset({(root_stat.st_dev, root_stat.st_ino)}),
                files,
                depth=0,
            )
            entries = self._group(files)
            # Forget files that are gone, so the cache does not grow without bound.
            seen = {f.path for f in files}
            self._headers = {p: v for p, v in self._headers.items() if p in seen}
            self._infos = {p: v for p, v in self._infos.items() if p in seen}
        entries.sort(key=lambda e: (e.model.relative_path.casefold(), e.model.relative_path))
        return entries

    @contextlib.contextmanager
    def _scan_slot(self) -> Iterator[None]:
        """Hold the catalog's one scan; waiting for it ends when the catalog closes."""
        with self._state:
            while self._scanning and not self._closed:
                self._state.wait()
            self._check_open()
            self._scanning = True
        try:
            yield
        finally:
            with self._state:
                self._scanning = False
                self._state.notify()

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceClosedError("the model catalog is closed")

    def resolve(self, reference: str) -> ModelInfo:
        """The model a user means by ``reference``.

        Accepted, in this order: a path relative to the models folder (``"model.gguf"``,
        ``"sub/model.gguf"``, any shard of a split model), the folder of a model that sits
        alone in it, an absolute path inside the folder, the file name or the name without
        ``.gguf`` (if only one model has it), and ``general.name`` (if only one model has
        it). The model may carry an ``error`` (a corrupt file is still the file meant).

        Raises :class:`ModelPathError` when the reference resolves outside the models
        folder (``../``, a foreign absolute path, a symlink pointing out) and
        ``allow_outside`` is not set, or names a file whose path is not valid UTF-8;
        :class:`ModelNotFoundError` with the closest names when nothing matches;
        ``ServiceClosedError`` once the catalog is closed.
        """
        text = reference.strip()
        if not text or "\0" in text:  # no file has that name, and os calls refuse NUL
            raise ModelNotFoundError(reference, [])
        if not encodable(text):
            # Undecodable bytes of a command line (surrogateescape) or a JSON "\ud800":
            # it can only mean a file listed under U+FFFD, and such a file is never used.
            shown = scrub(text)
            entries = self._list()
            self._refuse_inexact(shown, Path(shown), entries)
            listed = [entry.model for entry in entries if entry.exact]
            raise ModelNotFoundError(shown, _suggest(shown, listed))
        given = Path(text)
        candidate = given if given.is_absolute() else self._models_dir / given
        real = os.path.realpath(candidate)
        inside = _is_inside(real, os.path.realpath(self._models_dir))
        if not inside and not self._allow_outside:
            raise ModelPathError(
                f"model path {reference!r} resolves outside the models folder "
                f"{self._shown_dir}; {_OUTSIDE_HINT}"
            )
        entries = self._list()
        models = [entry.model for entry in entries if entry.exact]
        found = _match(reference, text, given, models)
        if found is None:
            found = _by_real_path(models).get(real)
        if found is not None:
            # Any name of a symlink out of the folder (its stem, its folder's name...)
            # reaches the same file as its path: refuse them all, not just the path.
            escaped = [] if self._allow_outside else outside_paths(found, self._models_dir)
            if escaped:
                raise ModelPathError(
                    f"model {reference!r} is {found.relative_path}, which resolves to "
                    f"{scrub(escaped[0])}, outside the models folder {self._shown_dir}; "
                    f"{_OUTSIDE_HINT}"
                )
            return found
        if not inside and self._is_model_file(candidate):
            outside = self._outside_model(candidate)
            if outside is not None:
                return outside
        self._refuse_inexact(text, given, entries)
        raise ModelNotFoundError(reference, _suggest(text, models))

    @staticmethod
    def _refuse_inexact(text: str, given: Path, entries: Sequence[_Entry]) -> None:
        """Raise :class:`ModelPathError` if ``text`` names a model listed under U+FFFD."""
        inexact = [entry.model for entry in entries if not entry.exact]
        found = _match(text, text, given, inexact) if inexact else None
        if found is not None:
            raise ModelPathError(f"model {text!r} is {found.relative_path}: {found.error}")

    # -- scanning -------------------------------------------------------------------------

    def _walk(
        self,
        folder: str,
        relative: str,
        root_real: str,
        ancestors: frozenset[tuple[int, int]],
        out: list[_File],
        *,
        depth: int,
        recursive: bool = True,
    ) -> None:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:  # unreadable folder: list what can be read
            return
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            self._check_open()  # a closing service does not wait for thousands of files
            try:
                self._visit(
                    entry,
                    relative=relative,
                    root_real=root_real,
                    ancestors=ancestors,
                    out=out,
                    depth=depth,
                    recursive=recursive,
                )
            except OSError:  # vanished or unreadable while we looked: skip it
                continue

    def _visit(
        self,
        entry: os.DirEntry[str],
        *,
        relative: str,
        root_real: str,
        ancestors: frozenset[tuple[int, int]],
        out: list[_File],
        depth: int,
        recursive: bool,
    ) -> None:
        name = entry.name
        is_link = entry.is_symlink()
        if entry.is_dir():
            if not recursive or depth >= _MAX_DEPTH:
                return
            st = entry.stat()
            key = (st.st_dev, st.st_ino)
            if key in ancestors:  # a symlink loop
                return
            outside = is_link and not _is_inside(os.path.realpath(entry.path), root_real)
            if outside and not self._allow_outside:
                return  # listing its files with errors could mean walking all of /
            self._walk(
                entry.path,
                f"{relative}{name}/",
                root_real,
                ancestors | {key},
                out,
                depth=depth + 1,
            )
            return
        if not name.lower().endswith(_GGUF_SUFFIX):
            return
        folder = relative[:-1]
        if not entry.is_file():
            if is_link:
                broken = "broken symbolic link: its target does not exist"
                out.append(
                    _checked(_File(entry.path, relative + name, folder, name, 0, (0, 0, 0), broken))
                )
            return
        st = entry.stat()
        problem: str | None = None
        if is_link and not self._allow_outside:
            target = os.path.realpath(entry.path)
            if not _is_inside(target, root_real):
                problem = (
                    f"symbolic link to {scrub(target)}, outside the models folder; {_OUTSIDE_HINT}"
                )
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        file = _File(entry.path, relative + name, folder, name, st.st_size, stamp, problem)
        out.append(_checked(file))

    # -- headers --------------------------------------------------------------------------

    def _header(self, file: _File) -> _HeaderOrError:
        """The file's header, or why it cannot be read; cached while the file is unchanged."""
        cached = self._headers.get(file.path)
        if cached is not None and cached[0] == file.stamp:
            return cached[1]
        self._check_open()
        self._header_reads += 1
        try:
            result: _HeaderOrError = read_header(file.path, cpu_budget_s=self._header_budget_s)
        except GGUFError as exc:
            result = str(exc)
            logger.debug("%s is listed as unusable: %s", file.relative, result)
        except OSError as exc:
            # Not cached: a permission fix does not change the modification time.
            return f"cannot read the file: {exc.strerror or exc}"
        self._headers[file.path] = (file.stamp, result)
        return result

    # -- grouping files into models -------------------------------------------------------

    def _group(self, files: Iterable[_File]) -> list[_Entry]:
        by_folder: dict[str, list[_File]] = defaultdict(list)
        for file in files:
            by_folder[file.folder].append(file)
        entries: list[_Entry] = []
        for folder_files in by_folder.values():
            entries.extend(self._group_folder(folder_files))
        return entries

    def _group_folder(self, files: list[_File]) -> list[_Entry]:
        projectors: list[_File] = []
        singles: list[tuple[_File, _HeaderOrError | None]] = []
        shard_sets: dict[tuple[str, int], dict[int, _File]] = defaultdict(dict)
        for file in files:
            if file.name.lower().startswith(_PROJECTOR_PREFIX):
                projectors.append(file)
                continue
            shard = _SHARD_NAME.match(file.name)
            if shard:
                number, count = int(shard["no"]), int(shard["count"])
                if 1 <= number <= count:
                    shard_sets[(shard["prefix"], count)][number] = file
                    continue
            header = None if file.problem else self._header(file)
            # A projector is a projector whatever its name says.
            if isinstance(header, GGUFHeader) and header.general_type == "mmproj":
                projectors.append(file)
            else:
                singles.append((file, header))

        usable = sorted((p for p in projectors if p.problem is None), key=lambda p: p.name)
        entries = [
            _Entry(self._single(file, header, _projector_for(file.name, usable)), file.exact)
            for file, header in singles
        ]
        for (prefix, count), shards in shard_sets.items():
            model = self._sharded(prefix, count, shards, usable)
            entries.append(_Entry(model, all(shard.exact for shard in shards.values())))
        return entries

    def _single(
        self, file: _File, header: _HeaderOrError | None, projector: Path | None
    ) -> ModelInfo:
        inputs = (file, header, projector)
        cached = self._infos.get(file.path)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        info = self._build_single(file, header, projector)
        self._infos[file.path] = (inputs, info)
        return info

    @staticmethod
    def _build_single(
        file: _File, header: _HeaderOrError | None, projector: Path | None
    ) -> ModelInfo:
        path = Path(file.path)
        if file.problem is not None or not isinstance(header, GGUFHeader):
            return ModelInfo.from_error(
                file.problem or str(header),
                path=path,
                relative_path=file.relative,
                size=file.size,
                shard_paths=(path,),
                projector_path=projector,
            )
        return ModelInfo.from_header(
            header,
            path=path,
            relative_path=file.relative,
            size=file.size,
            projector_path=projector,
        )

    def _sharded(
        self,
        prefix: str,
        count: int,
        shards: dict[int, _File],
        projectors: list[_File],
    ) -> ModelInfo:
        # The first shard's name, even when that shard is missing: built from another one.
        anyone = next(iter(shards.values()))
        suffix = anyone.name[len(prefix) + 6 :]  # "-of-NNNNN.gguf", as spelled on disk
        names = [f"{prefix}-{number:05d}{suffix}" for number in range(1, count + 1)]
        first_path = Path(anyone.path).with_name(names[0])
        first_relative = f"{anyone.folder}/{names[0]}" if anyone.folder else names[0]
        present = [shards[n] for n in sorted(shards)]
        shard_paths = tuple(Path(f.path) for f in present)
        size = sum(f.size for f in present)
        projector = _projector_for(names[0], projectors)

        def broken(error: str) -> ModelInfo:
            return ModelInfo.from_error(
                error,
                path=first_path,
                relative_path=first_relative,
                size=size,
                shard_count=count,
                shard_paths=shard_paths,
                projector_path=projector,
            )

        missing = [n for n in range(1, count + 1) if n not in shards]
        if missing:
            listed = ", ".join(f"{n} ({names[n - 1]})" for n in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            return broken(
                f"missing shard{'s' if len(missing) > 1 else ''} {listed}{more} of {count}"
            )
        headers: list[GGUFHeader] = []
        for number, file in enumerate(present, start=1):
            header = self._header(file) if file.problem is None else file.problem
            if not isinstance(header, GGUFHeader):
                return broken(f"shard {number} of {count} ({file.name}): {header}")
            headers.append(header)
        first = headers[0]
        if first.split_count is not None and first.split_count != count:
            return broken(
                f"shard 1 says the model has {first.split_count} shards, its file name says {count}"
            )
        return ModelInfo.from_header(
            first,
            path=first_path,
            relative_path=first_relative,
            size=size,
            shard_paths=shard_paths,
            projector_path=projector,
            parameter_count=sum(h.parameter_count for h in headers),
        )

    # -- models outside the folder (allow_outside) ----------------------------------------

    @staticmethod
    def _is_model_file(path: Path) -> bool:
        try:
            return path.name.lower().endswith(_GGUF_SUFFIX) and path.is_file()
        except OSError:  # a name too long, say: not a file we can use
            return False

    def _outside_model(self, path: Path) -> ModelInfo | None:
        """The model a file outside the folder belongs to, grouped with its folder mates."""
        folder = path.absolute().parent
        files: list[_File] = []
        with self._scan_slot():
            self._walk(
                str(folder),
                folder.as_posix().rstrip("/") + "/",
                os.path.realpath(folder),
                frozenset(),
                files,
                depth=0,
                recursive=False,
            )
            entries = self._group(files)
        wanted = os.path.realpath(path)
        return _by_real_path(entry.model for entry in entries if entry.exact).get(wanted)


# -- matching references ------------------------------------------------------------------


def outside_paths(model: ModelInfo, models_dir: str | os.PathLike[str]) -> list[str]:
    """The real paths of ``model``'s files (every shard) outside ``models_dir``.

    Symlinks are resolved, so a link in the folder to a file elsewhere counts as outside.
    It touches the file system: call it off the event loop.
    """
    root_real = os.path.realpath(models_dir)
    reals = (os.path.realpath(path) for path in (model.shard_paths or (model.path,)))
    return [real for real in reals if not _is_inside(real, root_real)]


def _is_inside(real: str, root_real: str) -> bool:
    real, root_real = os.path.normcase(real), os.path.normcase(root_real)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _strip_suffix(name: str) -> str:
    return name[: -len(_GGUF_SUFFIX)] if name.lower().endswith(_GGUF_SUFFIX) else name


def _shard_stem(name: str) -> str | None:
    shard = _SHARD_NAME.match(name)
    return shard["prefix"] if shard else None


def _aliases(model: ModelInfo) -> tuple[list[str], list[str]]:
    """Relative-path aliases and bare-name aliases of a model."""
    folder = model.relative_path.rpartition("/")[0]
    names = [model.name, *(p.name for p in model.shard_paths)]
    bare = [*names, _strip_suffix(model.name)]
    if (stem := _shard_stem(model.name)) is not None:
        bare.append(stem)
    paths = [f"{folder}/{n}" if folder else n for n in bare]
    return paths, bare


def _match(reference: str, text: str, given: Path, models: Sequence[ModelInfo]) -> ModelInfo | None:
    """The model ``text`` names by path or name; None when it names none.

    Raises :class:`ModelNotFoundError` listing the candidates when a name is ambiguous.
    """
    if given.is_absolute():
        return None  # matched by real path instead
    wanted = given.as_posix()
    by_path: dict[str, ModelInfo] = {}
    by_name: dict[str, list[ModelInfo]] = defaultdict(list)
    by_display: dict[str, list[ModelInfo]] = defaultdict(list)
    per_folder: dict[str, list[ModelInfo]] = defaultdict(list)
    for model in models:
        paths, bare = _aliases(model)
        for alias in paths:
            by_path.setdefault(alias, model)
        for alias in dict.fromkeys(bare):
            by_name[alias].append(model)
        if model.display_name:
            by_display[model.display_name].append(model)
        folder = model.relative_path.rpartition("/")[0]
        if folder:
            per_folder[folder].append(model)
    if wanted in by_path:
        return by_path[wanted]
    alone = per_folder.get(wanted.rstrip("/"), [])
    if len(alone) == 1:  # llama.cpp's router names such a model after its folder
        return alone[0]
    for index in (by_name, by_display):
        matches = index.get(text, [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ModelNotFoundError(reference, [m.relative_path for m in matches[:_SUGGESTIONS]])
    return None


def _by_real_path(models: Iterable[ModelInfo]) -> dict[str, ModelInfo]:
    index: dict[str, ModelInfo] = {}
    for model in models:
        for shard in model.shard_paths or (model.path,):
            index.setdefault(os.path.realpath(shard), model)
    return index


def _suggest(text: str, models: Sequence[ModelInfo]) -> list[str]:
    """Up to three relative paths of the models whose names are closest to ``text``."""
    candidates: dict[str, str] = {}
    for model in models:
        paths, bare = _aliases(model)
        for alias in (*paths, *bare, model.display_name or ""):
            if alias:
                candidates.setdefault(alias.casefold(), model.relative_path)
    close = difflib.get_close_matches(text.casefold(), candidates, n=10, cutoff=0.5)
    return list(dict.fromkeys(candidates[c] for c in close))[:_SUGGESTIONS]


def _projector_for(model_name: str, projectors: Sequence[_File]) -> Path | None:
    """The projector beside a model: the one whose name shares most with the model's.

    One projector in a folder serves every model there (llama.cpp's router layout); with
    several (a vision model per quantization, say) the longest common name prefix wins,
    then the first by name.
    """
    if not projectors:
        return None
    stem = _strip_suffix(_shard_stem(model_name) or model_name).casefold()

    def shared(projector: _File) -> int:
        rest = _strip_suffix(projector.name)[len(_PROJECTOR_PREFIX) :].lstrip("-_.").casefold()
        return _shared_prefix_length(stem, rest)

    best = max(projectors, key=shared)  # max keeps the first of equals: sorted by name
    return Path(best.path)


def _shared_prefix_length(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))
