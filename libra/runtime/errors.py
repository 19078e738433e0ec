"""Errors a user can act on, carrying what they need; mapped to HTTP codes in one place (API)."""

from __future__ import annotations


class MediaDecodeError(ValueError):
    """A request's media could not be turned into model input.

    `modality` is "audio", "video" or "text"; `code` is a stable machine-readable reason
    (e.g. "unsupported_format", "empty", "truncated", "too_long", "no_channels", "no_frames",
    "no_text"); `why` is the sentence a person reads. The API answers these with HTTP 4xx.
    """

    def __init__(self, modality: str, code: str, why: str) -> None:
        super().__init__(f"{modality}: {why}")
        self.modality = modality
        self.code = code
        self.why = why

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.modality, self.code, self.why))
