"""Account synchronization: snapshots, the pure diff between them, reconciliation."""
