"""Built-in actions, guards and delays, grouped by port (one module per namespace).

The module name is the namespace (``engine/actions/sip.py`` → ``sip.reply``). Nothing is
registered by importing this package: ``engine.vocabulary.load_vocabulary()`` names the
modules and is called by each composition root.
"""
