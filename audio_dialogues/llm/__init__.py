"""What every command that asks an OpenAI-compatible endpoint shares: the client, the answer journal, usage.

``generate`` (dialogues), ``predict`` (a model's answers to the test splits) and ``evaluate``'s judge all
send chat completions with the same retries, rate limits and ``Retry-After`` handling
(:mod:`.client`), journal every answer the moment it arrives so that no answer is paid twice
(:mod:`.journal`), and count tokens and dollars the same way (:mod:`.usage`). :mod:`.batch` sends requests
through a batch API instead, or writes and reads the files of an offline batch run, into the same journal.

This layer sits below the commands: it imports only :mod:`audio_dialogues.files`,
:mod:`audio_dialogues.errors`, the standard library and third-party packages. The submodules import
``openai`` and ``aiolimiter``, so importing this package itself stays free.
"""
