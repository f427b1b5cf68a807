"""tts-ops-strategies: direct, blue-green, rolling and canary deploys.

The plugin itself is `tts_ops_strategies.plugin` (the ``tts_ops`` entry point). Each
strategy gets a `tts_ops.deploy.context.DeployContext` and either completes or restores
the old generation and raises `DeployFailed`.
"""

__version__ = "0.1.0"
