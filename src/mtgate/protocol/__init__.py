"""Wire protocol v1 (docs/protocol.md is the normative spec)."""
