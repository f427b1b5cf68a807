"""The deploy engine: releases, history, the deploy lock, checks, and the strategy contract.

Strategies (direct, blue_green, rolling, canary) are plugins (``tts-ops-strategies``)
registered through ``tts_ops_register_strategies``; they get a `DeployContext`.
"""
