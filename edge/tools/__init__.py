"""Off the device's hot path: benchmarks (bench, gate_bench, web_bench, device facts), the demo, the
soak, and stand-ins for what a test or demo lacks (PLC, camera, MQTT broker)."""
