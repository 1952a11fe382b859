"""From pixels to a verdict: one TFLite loader for every caller (runtime), tiling and stitching
(segment), the size rules (decision), and the bundled default model (models)."""
