"""Training the CLIP-S4 student: joint augmentation, k-means segments, memory bank, losses, and the loop."""
