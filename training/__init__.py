"""Training side: Keras 3 models, data pipeline, losses and the `station train` verb."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter, not ours
# TensorFlow's default CPU allocator gives freed tensors back to the OS, so every training step
# faults its pages in afresh (measured on crackforest: 1.6 s of system time a step, 40 % of the
# CPU); the pooling BFC allocator keeps them (0.3 s) and steps take about a third less time.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
