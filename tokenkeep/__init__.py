"""TokenKeep: a small self-hosted OAuth2 token gateway."""

__version__ = "0.1.0"
