"""The package's one exception hierarchy, and the exit status of each kind of error.

Every error the package raises on purpose is an :class:`AudioDialoguesError`, so a user of the API
catches the package's errors with one ``except`` (as ``datasets`` users catch ``DatasetsError``).
Subclasses keep the built-in base callers relied on before (``ValueError`` for bad input, ``OSError``
for an output that cannot be written, ``FileNotFoundError`` for missing audio), so
``except ValueError`` goes on working. Exceptions of other libraries are wrapped where they enter
the package, with the original chained as ``__cause__`` and its reason kept in the message.

Kept free of imports: :mod:`audio_dialogues` and every command import this module.
"""

from __future__ import annotations


class AudioDialoguesError(Exception):
    """Base of every error the package raises on purpose; the message names the file, record or option."""


class UsageError(AudioDialoguesError, ValueError):
    """Options that cannot be used as given (out of range, not a number, contradicting each other)."""


class ConfigError(AudioDialoguesError, ValueError):
    """An option of the builder with a value it cannot use; the message names the option and the fix.

    Defined here, not in :mod:`.dataset.options`, because the local-audio layer below the dataset raises it
    for an ``audio_dir`` it cannot list; :mod:`.dataset.options` names it too.
    """


#: Exit status of the command line, decided here once: the first class in this list that an error is an
#: instance of gives the status. Anything that is an :class:`AudioDialoguesError` and none of these exits 1.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (KeyboardInterrupt, 130),  # Ctrl-C: what was finished is kept; run the same command again
    (UsageError, 2),  # the command as typed cannot run (as argparse's own errors)
    (AudioDialoguesError, 1),  # bad input, unreadable input, unwritable output, a run that had to stop
)


def exit_code(error: BaseException) -> int:
    """The command line's exit status for ``error`` (see :data:`EXIT_CODES`)."""
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def reason(error: BaseException, *, leave_out: str = "") -> str:
    """What went wrong, from the messages along ``error``'s chain of causes, outermost first, each said once.

    Foreign exceptions hide their reason in a cause: datasets' ``FileNotFoundError(url)`` over aiohttp's
    ``404, message='Not Found'``, a connection error over ``[Errno 111] Connection refused``. A package error
    wrapping one says this, not just the outermost message. ``leave_out`` drops a message that is only that
    text (the URL or path the wrapping message already names).
    """
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 4:
        text = str(seen).strip() or type(seen).__name__
        if text != leave_out and not any(text in part for part in parts):
            parts.append(text)
        seen = seen.__cause__ or seen.__context__
    return "; ".join(parts) or type(error).__name__
