"""The pure core: codecs, ledger rules, agreement and snapshot layout.

Nothing in this package touches asyncio, sockets, files, libtorrent, the clock or global
randomness; time and randomness are passed in. ``tests/unit/test_tidy.py`` enforces this.
"""
