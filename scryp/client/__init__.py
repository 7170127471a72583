"""The Scryp client: ``python -m scryp.client``. Subcommands live in their own modules."""
