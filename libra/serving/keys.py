"""API keys: how they are made, how they are stored (hashed), and how a presented key is found.

A key is `libra_` + 43 characters of `secrets.token_urlsafe(32)` (256 random bits). The server
keeps only its SHA-256, in entries one per line (a file, or `LIBRA_API_KEYS`, e.g. a Secrets
Manager secret injected as an environment variable):

    # name   hash                   options
    alice    sha256:9f86d081...     rate_rps=20 burst=40
    ops      sha256:2c26b46b...     admin

Why SHA-256 and not a password KDF (scrypt, argon2): a KDF slows down offline guessing of a
*low-entropy* secret after the hash file leaks. A 256-bit random key cannot be guessed either
way, so the KDF would buy nothing, and running one (tens of ms of CPU by design) on every request
would hand anyone who sends bad keys a way to burn the router's cores. `libra-serve keys hash`
refuses keys shorter than `MIN_KEY_CHARS`, so a human-chosen password never gets a fast hash.

A presented key is hashed once and compared with every stored hash by `hmac.compare_digest`,
without stopping at a match: the time taken says nothing about which key, or how much of one,
matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "libra_"
MIN_KEY_CHARS = 32
_HASH = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class KeyConfigError(ValueError):
    """A key entry that cannot be read: says where (source and line) and why."""

    def __init__(self, source: str, line: int, why: str) -> None:
        super().__init__(f"{source}:{line}: {why}" if line else f"{source}: {why}")
        self.source, self.line, self.why = source, line, why


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (logged, never the key), its hash, its rights and limits."""

    name: str
    digest: bytes
    admin: bool = False
    rate_rps: float | None = None
    """Per-key override of `Settings.rate_limit_rps`; None takes the default."""
    burst: int | None = None
    """Per-key override of `Settings.rate_limit_burst`."""


def new_key() -> str:
    """A fresh key with 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of `key`: `sha256:<hex>` (see module docs for why SHA-256)."""
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"the key has {len(key)} characters; at least {MIN_KEY_CHARS} are "
                         f"needed (a random key, as `libra-serve keys new` makes, not a password)")
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_keys(text: str, source: str) -> list[ApiKey]:
    """Key entries, one per line or separated by `;`; `#` starts a comment."""
    keys = []
    entries = [(n, e) for n, line in enumerate(text.splitlines(), 1) for e in line.split(";")]
    for number, raw in entries:
        fields = raw.split("#", 1)[0].split()
        if fields:
            keys.append(_parse_entry(fields, source, number))
    return keys


def _parse_entry(fields: list[str], source: str, line: int) -> ApiKey:
    if len(fields) < 2:
        raise KeyConfigError(source, line, f"{' '.join(fields)!r}: an entry is `name "
                             f"sha256:<64 hex> [admin] [rate_rps=N] [burst=N]`")
    name, hashed, options = fields[0], fields[1], fields[2:]
    if not _NAME.fullmatch(name):
        raise KeyConfigError(source, line, f"key name {name!r}: use 1-64 letters, digits, "
                             f"'_', '.', '@' or '-'")
    match = _HASH.fullmatch(hashed.lower())
    if match is None:
        raise KeyConfigError(source, line, f"key {name!r}: {hashed[:12]!r}... is not a SHA-256 "
                             f"hash (`sha256:` + 64 hex; `libra-serve keys hash` makes one)")
    admin, rate_rps, burst = False, None, None
    for option in options:
        key, _, value = option.partition("=")
        try:
            if option == "admin":
                admin = True
            elif key == "rate_rps" and float(value) > 0:
                rate_rps = float(value)
            elif key == "burst" and int(value) >= 1:
                burst = int(value)
            else:
                raise ValueError
        except ValueError:
            raise KeyConfigError(source, line, f"key {name!r}: option {option!r}; the options "
                                 f"are admin, rate_rps=<number > 0>, burst=<integer >= 1>"
                                 ) from None
    return ApiKey(name, bytes.fromhex(match.group(1)), admin, rate_rps, burst)


class Keyring:
    """The configured keys; `lookup` finds the one a client presented, in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)
        for what, values in (("name", [k.name for k in self.keys]),
                             ("hash", [k.digest.hex() for k in self.keys])):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                shown = repeated if what == "name" else [h[:12] + "..." for h in repeated]
                raise KeyConfigError("api keys", 0, f"two keys share the {what} {shown}")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_admin(self) -> bool:
        return any(k.admin for k in self.keys)

    def lookup(self, presented: str) -> ApiKey | None:
        """The key whose hash matches, or None; every stored hash is compared (no early exit)."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    @classmethod
    def load(cls, entries: str | None, path: Path | None) -> Keyring:
        """Keys from the `LIBRA_API_KEYS` text and/or a keys file (both may be given)."""
        keys = parse_keys(entries, "LIBRA_API_KEYS") if entries else []
        if path is not None:
            try:
                text = path.read_text()
            except OSError as exc:
                raise KeyConfigError(str(path), 0, f"cannot read the keys file "
                                     f"({exc.strerror})") from None
            keys += parse_keys(text, str(path))
        return cls(keys)
