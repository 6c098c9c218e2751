"""Audio data: the synthetic corpus, MIR-1K / MUSDB18-HQ loaders and augmentation."""
