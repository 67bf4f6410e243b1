"""Acting on open positions: SL/TP changes, closes and the bridge-managed trailing stop."""
