"""The pure core: codecs, ledger rules, agreement and snapshot layout.

Nothing in this package touches asyncio, sockets, files, libtorrent, the clock or global
randomness; time and randomness are passed in (protocol §1.4).
``tests/unit/test_core_purity.py`` enforces this.
"""
