"""Inspection station: the device runtime.

Imports numpy, OpenCV, PyYAML and a TFLite runtime only; never TensorFlow, so a Raspberry Pi or
Jetson installs just the `edge` extra.
"""

__version__ = "0.1.0"
