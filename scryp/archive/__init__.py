"""The archival seeder (protocol §10.8): every round's ``transactions`` and certificate since
the genesis, the whole state every K rounds, seeded in the swarm and listed over HTTP.
``python -m scryp.seeder --archive``."""
