"""Training pieces the classifier is configured with: losses, batch mixing (Mixup/CutMix), optimizer factories and LR schedules."""
