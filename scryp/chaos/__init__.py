"""The bank test as part of the product: ``python -m scryp.chaos`` (protocol §11).

A local network of real server processes takes a steady load of payments (with double
spends, replays and new accounts) while a seeded schedule kills (SIGKILL) and restarts,
or pauses (SIGSTOP/SIGCONT), one server at a time, the leader most often. Every request and
every outcome the servers report is recorded; at the end the faults heal, and a checker
replays every round from the genesis and holds the servers to what they said.

Modules: ``schedule`` (the seeded fault plan, pure), ``workload`` (payments and what became
of them), ``checker`` (the verdict, pure over what was recorded and what is on disk),
``run`` (processes, signals and the clock), ``__main__`` (the command).
"""
