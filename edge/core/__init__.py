"""The station's vocabulary: errors, the configuration (one model per section), the model card, the
typed state the page and metrics read. Everything else in edge/ builds on these."""
