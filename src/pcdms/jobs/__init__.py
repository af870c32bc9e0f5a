"""Jobs built on the pipeline: batch generation and refinement (the one resumable job runner), animation through
pose sequences to videos, re-ID augmentation and replayed settings files."""
