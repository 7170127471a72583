"""Code written from docs/protocol.md alone, never importing ``scryp``: an independent reader
of the protocol, used by tests to check that the document is enough (issue 13)."""
