"""Where verdicts go besides the gate, each isolated so a failing one never stops inspection: the
results log and reject overlays (results), MQTT (mqtt), the operator page with /metrics (web)."""
