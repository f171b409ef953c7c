"""EditWorld: a procedural image-editing world whose truth is known exactly.

Pure Python, numpy and Pillow (no Django, no torch), so the demo, load tests, quality-control
tests and RL runs can all use it:

* :mod:`editworld.scene`: scenes of coloured shapes on textured backgrounds, rendered
  deterministically at any size (64-256 px intended, 32 px works);
* :mod:`editworld.tasks`: edits of EditReward-Bench's task types with a procedural correct target;
* :mod:`editworld.editors`: candidate editors of controlled quality, each candidate carrying its
  exact truth per dimension;
* :mod:`editworld.oracle`: the one measurement of that truth (:func:`~editworld.oracle.measure`)
  and an oracle RL reward;
* :mod:`editworld.dataset`: annotation import bundles with the truth beside them, RL prompts, and
  the truth as a benchmark scores file;
* :mod:`editworld.simulate`: simulated annotators (noise, ties, position bias) and a driver that
  ranks through the real annotation API over HTTP.

This package imports nothing on purpose: ``editworld.editor`` (the tiny trainable editor)
imports torch, which the web process must never load.
"""
