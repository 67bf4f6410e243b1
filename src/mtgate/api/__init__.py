"""The HTTP API the execution engine calls (``mtgate serve``): docs/api.md."""
