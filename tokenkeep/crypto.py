"""Encryption at rest for client secrets, tokens and PKCE verifiers.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) gives authenticated
encryption with a versioned token format; MultiFernet lets an old key keep
decrypting while a new one encrypts, which key rotation needs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tokenkeep.errors import ConfigError

# Enough for every token of a 10,000-provider deployment (bench/, "Scale"): a miss
# costs a Fernet decryption (about 30 us), ~20x the hit. Keyed by the SHA-256 of the
# ciphertext rather than the ciphertext itself: about 0.3 kB an entry instead of 0.6.
_CACHE_SIZE = 16384


class Cipher:
    """Encrypts and decrypts short strings; caches decryptions by ciphertext.

    The hot path (serving a stored token) would otherwise decrypt the same
    ciphertext on every request.
    """

    def __init__(self, key: str, *old_keys: str) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in (key, *old_keys)])
        except (ValueError, TypeError):
            raise ConfigError(
                "encryption_key is not a valid Fernet key (32 bytes, url-safe base64)"
            ) from None
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Cipher(<keys hidden>)"

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a string; the result is ASCII."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a string; ConfigError if no configured key opens it."""
        key = hashlib.sha256(ciphertext.encode("ascii")).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigError(
                "stored secrets cannot be decrypted with the configured encryption_key; "
                "restore the key this database was written with"
            ) from None
        with self._lock:
            self._cache[key] = plaintext
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return plaintext

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the primary key."""
        return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
