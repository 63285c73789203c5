"""Encrypted args (Oban.Pro.Worker `encrypted: [key: ...]`): AES-256-CTR with a 32-byte key,
base64-encoded, fetched from a callable at use time. Only args are encrypted; meta stays plain.

Storage (Pro's own is not public): args become `{"encrypted": base64(iv || ciphertext)}` with a
random 16-byte counter block per job, so equal args never look alike in the table or in Oban Web.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import orjson

from .. import jsonc
from ..errors import ValidationError

FIELD = "encrypted"


def key_bytes(source: Callable[[], str | bytes]) -> bytes:
    raw = source()
    try:
        key = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        raise ValidationError("encrypted.key", "the key must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise ValidationError("encrypted.key", f"the key must decode to 32 bytes, got {len(key)}")
    return key


def _cipher(key: bytes, iv: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CTR(iv))


def encrypt(args: dict[str, Any], source: Callable[[], str | bytes]) -> dict[str, Any]:
    iv = os.urandom(16)
    encryptor = _cipher(key_bytes(source), iv).encryptor()
    data = encryptor.update(jsonc.dumps(args)) + encryptor.finalize()
    return {FIELD: base64.b64encode(iv + data).decode()}


def decrypt(args: dict[str, Any], source: Callable[[], str | bytes]) -> dict[str, Any]:
    blob = args.get(FIELD) if isinstance(args, dict) else None
    if not isinstance(blob, str) or set(args) != {FIELD}:
        raise ValueError("args are not encrypted by oban_bridge")
    raw = base64.b64decode(blob)
    decryptor = _cipher(key_bytes(source), raw[:16]).decryptor()
    plain = decryptor.update(raw[16:]) + decryptor.finalize()
    try:
        value = jsonc.loads(plain)
    except orjson.JSONDecodeError:
        raise ValueError("encrypted args did not decrypt: wrong key?") from None
    if not isinstance(value, dict):
        raise ValueError("encrypted args did not decrypt to an object")
    return value
