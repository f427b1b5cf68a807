"""Log management: one record type for every sink, stats, export, archive, monitor."""
