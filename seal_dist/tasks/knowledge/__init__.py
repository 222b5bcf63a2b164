"""Knowledge incorporation (SEAL domain 1): passages, implications as self-edits, questions as reward."""
