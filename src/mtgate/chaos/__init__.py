"""`mtgate chaos`: random orders and faults against simulated terminals, checked against the
simulator's ground truth (docs/operations.md, "Chaos suite").

plan (pure, seeded) → driver (bridge + mtsim, real sockets, real time) → truth (pure
comparison of the journal and the bridge's views with the trade servers) → report (JSON).
"""
