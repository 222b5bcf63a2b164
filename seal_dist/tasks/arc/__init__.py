"""Few-shot abstract reasoning on ARC tasks (SEAL domain 2)."""
