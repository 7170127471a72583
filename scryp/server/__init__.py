"""The Scryp server: ``python -m scryp.server`` (see ``__main__``), its driver and its API."""
