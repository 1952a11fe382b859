"""Offline evaluation shared by training, quantize and bench: folder datasets, metrics, `station eval`."""
