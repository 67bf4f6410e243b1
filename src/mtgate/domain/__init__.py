"""Pure domain values shared by the bridge and the simulator: no I/O here."""
