"""Caller authentication: the master key, scoped keys, signed one-time auth links.

Keys are compared in constant time (the master key) or looked up by their
SHA-256 (scoped keys: only the hash is stored). Auth links carry an expiry
and a nonce signed with HMAC-SHA256 under a key derived from the encryption
key; a nonce is spent on first use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from tokenkeep.errors import InsufficientScope, InvalidRequest, InvalidToken
from tokenkeep.keystore import KeyStore
from tokenkeep.models import ApiKey, Clock, is_valid_alias

KEY_PREFIX = "tk_"
MAX_LINK_TTL = 7 * 86400


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: the master key (every provider) or a scoped key."""

    name: str
    providers: tuple[str, ...] | None  # None: every provider

    def require(self, alias: str) -> None:
        """Raise InsufficientScope unless this caller may read `alias`."""
        if self.providers is not None and alias not in self.providers:
            raise InsufficientScope(f"the key {self.name!r} may not read provider {alias!r}")


def hash_key(key: str) -> str:
    """The stored form of a scoped key."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Authenticates bearer keys and signs and checks auth links."""

    def __init__(
        self, repo: KeyStore, *, master_key: str, encryption_key: str, public_url: str,
        clock: Clock,
    ) -> None:  # fmt: skip
        self.repo = repo
        self._master = master_key.encode()
        raw = base64.urlsafe_b64decode(encryption_key.encode())
        self._link_key = hmac.new(raw, b"tokenkeep auth-link v1", hashlib.sha256).digest()
        self.public_url = public_url
        self.clock = clock

    def __repr__(self) -> str:
        return "KeyRing(<keys hidden>)"

    def authenticate(self, key: str) -> Caller:
        """The caller owning `key`, or InvalidToken."""
        if hmac.compare_digest(key.encode(), self._master):
            return Caller("master", None)
        if key.startswith(KEY_PREFIX):
            found = self.repo.find_api_key(hash_key(key))
            if found is not None:
                now = self.clock()
                if found.last_used_at is None or now - found.last_used_at > 60:
                    self.repo.touch_api_key(found.name, now)  # at most once a minute
                return Caller(found.name, found.providers)
        raise InvalidToken("the API key is not valid")

    def create(self, name: str, providers: tuple[str, ...] | None) -> str:
        """Create a scoped key and return it; only its hash is stored."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidRequest("a key name is 1-64 letters, digits, '-' or '_'")
        for alias in providers or ():
            if not is_valid_alias(alias):
                raise InvalidRequest(f"{alias!r} is not a valid provider alias")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        if not self.repo.create_api_key(name, hash_key(key), providers, self.clock()):
            raise InvalidRequest(f"a key named {name!r} exists; revoke it first")
        return key

    def list(self) -> list[ApiKey]:
        """Every scoped key (never the keys themselves)."""
        return self.repo.list_api_keys()

    def revoke(self, name: str) -> None:
        """Delete a scoped key."""
        if not self.repo.revoke_api_key(name):
            raise InvalidRequest(f"no key is named {name!r}")

    def auth_link(self, alias: str, ttl: int) -> str:
        """A signed, expiring, single-use URL that starts the flow for `alias`."""
        if not 60 <= ttl <= MAX_LINK_TTL:
            raise InvalidRequest(f"--ttl must be between 60 and {MAX_LINK_TTL} seconds")
        expires = int(self.clock()) + ttl
        nonce = secrets.token_urlsafe(16)
        sig = self._sign(alias, expires, nonce)
        query = urlencode({"provider": alias, "expires": expires, "nonce": nonce, "sig": sig})
        return f"{self.public_url}/auth?{query}"

    def check_link(self, alias: str, expires: str, nonce: str, sig: str) -> None:
        """Accept a link once: right signature, not expired, nonce unspent."""
        # ASCII digits only and a bounded length: int() refuses "²" and 5,000-digit strings.
        if (
            not (expires.isascii() and expires.isdigit())
            or len(expires) > 12
            or not nonce
            or not sig
        ):
            raise InvalidToken("this authorization link is malformed")
        expected = self._sign(alias, int(expires), nonce)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise InvalidToken("this authorization link is not valid")
        now = self.clock()
        if int(expires) < now:
            raise InvalidToken("this authorization link has expired; ask for a new one")
        nonce_hash = hashlib.sha256(nonce.encode()).hexdigest()
        if not self.repo.spend_link(nonce_hash, float(expires), now):
            raise InvalidToken("this authorization link was already used; ask for a new one")

    def _sign(self, alias: str, expires: int, nonce: str) -> str:
        message = f"{alias}\n{expires}\n{nonce}".encode()
        digest = hmac.new(self._link_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
