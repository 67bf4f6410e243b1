"""Execution events: what the bridge tells the world, through a transactional outbox.

Every event is a row of the journal database's ``outbox`` table, written in the transaction of
the state change it describes (:mod:`mtgate.events.model` builds them, the journal and the sync
store write them), then relayed to the sinks by :mod:`mtgate.events.relay`: WebSocket clients,
NATS JetStream and Kafka. docs/events.md is the contract: types, envelope, schemas, guarantees.
"""
