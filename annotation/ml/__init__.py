"""Machine-learning code of this app.

Boundary: nothing under this package imports Django (tests/test_import_boundary.py
checks it). It takes a config dataclass and plain data, returns a result
dataclass, and reports progress through a callback, so it runs alike under a
Celery task, a management command or torchrun on a GPU node. torch,
transformers and diffusers are imported here only, never at Django start-up.
"""
