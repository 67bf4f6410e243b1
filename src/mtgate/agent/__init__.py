"""The terminal side in Python: an agent beside one MetaTrader 5 terminal that dials the
bridge and trades through the ``MetaTrader5`` package (:mod:`mtgate.agent.agent`)."""
