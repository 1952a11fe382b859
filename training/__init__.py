"""Training side: Keras 3 models, data pipeline, losses and the `station train` verb."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter, not ours
