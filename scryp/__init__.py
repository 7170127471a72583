"""Scryp: a payment ledger with no blockchain.

A small odd quorum of servers agrees, round after round, on one flat file of account balances,
seeds every agreed snapshot as a torrent and points to it from the Mainline DHT. See
``docs/protocol.md`` for the numbered specification that the code cites.
"""

__version__ = "0.1.0"
