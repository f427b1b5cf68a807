"""The core's built-in plugin: what tts-ops provides without any plugin installed.

Registers nothing but keeps the built-ins path exercised; the embedded registry
and the file log sink are added here by their issues.
"""

from __future__ import annotations
