"""A fleet: the hosts of the config's ``fleet`` section, operated from one machine over
SSH (`tts_ops.fleet.ssh`), each sent its own config (`tts_ops.fleet.inventory`) and
keeping it (`tts_ops.fleet.received`); `tts_ops.fleet.operate.Fleet` runs a command on
them, and ``tts-ops fleet`` (`tts_ops.cli.fleet_cmd`) prints what it reports."""
