"""``tts-ops web``: a status page that refreshes itself, ``/api/status``, and token-guarded
actions (`tts_ops.web.server`; the page itself is in ``static/``)."""
