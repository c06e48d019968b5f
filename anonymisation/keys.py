"""Project keys: one 256-bit secret per data-space project, kept outside the data.

Where a key comes from, first match wins:
1. the variable ``DS4H_KEY_<PROJECT>`` (project upper-cased, other characters as ``_``): 64 hex digits;
2. the file ``$DS4H_KEYS/<project>.key`` (default folder ``~/.config/ds4h/keys``), mode 0600.

The key itself never appears in logs, metadata or exceptions: only its fingerprint, an HMAC of a
fixed label, which identifies the key without revealing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

FINGERPRINT_LABEL = b"ds4h/key-fingerprint/v1"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class KeyError_(Exception):
    """A missing or malformed key, worded for the user (never contains key material)."""


def keys_dir() -> Path:
    env = os.environ.get("DS4H_KEYS")
    return Path(env).expanduser() if env else Path.home() / ".config" / "ds4h" / "keys"


def env_var(project: str) -> str:
    return "DS4H_KEY_" + re.sub(r"[^A-Z0-9]", "_", project.upper())


def key_path(project: str) -> Path:
    return keys_dir() / f"{project}.key"


@dataclass(frozen=True, slots=True)
class ProjectKey:
    project: str
    secret: bytes
    source: str  # "env" or the file path

    def __repr__(self) -> str:  # never print the secret
        return f"ProjectKey(project={self.project!r}, fingerprint={self.fingerprint!r}, source={self.source!r})"

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secret)


def fingerprint(secret: bytes) -> str:
    return hmac.new(secret, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def _how_to(project: str) -> str:
    return f"run 'ds4h keys new --project {project}' (or set {env_var(project)} to 64 hex digits)"


def load_key(project: str) -> ProjectKey:
    var = env_var(project)
    value = os.environ.get(var)
    if value is not None:
        if not _HEX64.match(value.strip()):
            raise KeyError_(f"{var} must hold exactly 64 hex digits; {_how_to(project)}")
        return ProjectKey(project, bytes.fromhex(value.strip()), "env")
    path = key_path(project)
    if not path.exists():
        raise KeyError_(f"no key for project {project!r} (looked for {var} and {path}): {_how_to(project)}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyError_(f"{path} is readable by others (mode {mode:o}): run 'chmod 600 {path}'")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not _HEX64.match(text):
        raise KeyError_(f"{path} must hold exactly 64 hex digits; {_how_to(project)}")
    return ProjectKey(project, bytes.fromhex(text), str(path))


def new_key(project: str, *, overwrite: bool = False) -> ProjectKey:
    path = key_path(project)
    if path.exists() and not overwrite:
        raise KeyError_(
            f"{path} exists: a new key would make new pseudonyms for every patient; "
            "remove the file first if that is really what you want"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(32)
    _write_private(path, (secret.hex() + "\n").encode("ascii"))
    return ProjectKey(project, secret, str(path))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically through a new file created with mode 0600 in the same
    folder (never an existing file whose mode could let others read it), fsync, then rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename, durable (some filesystems cannot sync a folder)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


write_private = _write_private  # for other private files (federation keys)


def list_keys() -> list[tuple[str, str, str]]:
    """(project, fingerprint or error, source) for every key file and key variable."""
    out: dict[str, tuple[str, str, str]] = {}
    d = keys_dir()
    if d.exists():
        for p in sorted(d.glob("*.key")):
            try:
                k = load_key(p.stem) if env_var(p.stem) not in os.environ else None
                if k is not None:
                    out[p.stem] = (p.stem, k.fingerprint, str(p))
            except KeyError_ as e:
                out[p.stem] = (p.stem, f"error: {e}", str(p))
    for var, value in sorted(os.environ.items()):
        if var.startswith("DS4H_KEY_") and _HEX64.match(value.strip()):
            name = var.removeprefix("DS4H_KEY_").lower()
            out[name] = (name, fingerprint(bytes.fromhex(value.strip())), var)
    return sorted(out.values())
