"""Training plumbing shared by the reward-model fine-tune and the RL trainer: the process group
under ``torchrun`` (:mod:`mlcore.distributed`), checkpoints written atomically and resumed
(:mod:`mlcore.checkpoints`), seeding and RNG state. No Django (tests/test_import_boundary.py)."""
