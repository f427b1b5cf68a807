"""``python -m tts_ops``: the same as the ``tts-ops`` command."""

from tts_ops.main import main

main()
