"""Research code of the post classifier: fine-tuning in torch, kept out of the installed package.

``python -m research.finetune`` re-fine-tunes the MiniLM part and ``python -m
research.mpnet_train`` the accurate part's mpnet layers (both need the ``finetune`` extra); run
them from a source checkout. They write into ``classifiers/models/``, which :mod:`classifiers`
ships and runs without torch. The log of what was tried and measured is ``research/README.md``; the
labelled data that training does not use is in ``research/data/``. Nothing in ``classifiers`` or
``monitor`` imports this package.
"""
