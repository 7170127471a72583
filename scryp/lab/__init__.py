"""The lab: a virtual internet on one Linux machine for running Scryp across many hosts
(issue 9). ``python -m scryp.lab SCENARIO`` (or ``tools/lab``); see ``__main__``."""
