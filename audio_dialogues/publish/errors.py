"""The publish layer's error, in a module of its own so that every publish module can raise it."""

from __future__ import annotations

from ..errors import AudioDialoguesError


class PublishError(AudioDialoguesError, ValueError):
    """A version that cannot be built or pushed; the message says what and where."""
