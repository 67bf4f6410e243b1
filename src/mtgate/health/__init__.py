"""Connection health: per-terminal measurements, alert rules and the monitor that samples them.

The measurements (:mod:`.windows`, :mod:`.meter`) and the rules (:mod:`.alerts`) are pure and
fed values; :mod:`.monitor` is the one task that samples them, writes ``bridge_health_metrics``
and tells listeners (docs/operations.md, "Connection health and alerts").
"""
