"""The station's vocabulary: errors, the configuration (one model per section), the model card, the
typed state the page and metrics read, image files, and the facts of the device it runs on.
Everything else in edge/ builds on these."""
