"""Names of the training losses and learning-rate schedules (light: no TensorFlow import,
so the CLI can offer them as choices without loading TensorFlow)."""

LOSSES = ("l1", "l1+sdr", "sdr", "bss-sdr")
SCHEDULES = ("constant", "cosine", "cosine-budget")
