"""tts-ops benchmarks: figures against anchors measured in the same run."""
