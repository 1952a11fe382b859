"""The daemon: the per-frame work and `station run` (run), its threads and queues (pipeline), and
systemd supervision (watchdog)."""
