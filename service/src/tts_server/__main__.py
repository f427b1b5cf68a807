"""``python -m tts_server``."""

from tts_server.cli import main

main()
