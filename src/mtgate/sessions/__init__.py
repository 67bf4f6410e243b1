"""Terminal sessions: listener, handshake, request/response correlation, heartbeat, routing."""
