"""Datasets for pose-guided person image synthesis (`shared/REFERENCE.md` Sec. 4).

- `formats`: readers and writers of the field's three dataset layouts (PATN/DPTN csv, GFLA/PIDM pairs txt,
  the PCDMs authors' json), all yielding the same pair records and per-image keypoints.
- `check`: validate a dataset root and list every problem with its file and line.
- `dataset`: the torch `PairDataset` that feeds training (images, poses, keypoints of a pair).
- `synth`, `synth_draw`: procedurally drawn people in the PATN layout, for tests, the demo and CPU training.

Nothing is imported eagerly: `import pcdms.data` stays free of torch.
"""
