"""Host side of hardware-in-the-loop testing: board sessions, references, the HIL run, reports.

``session`` (connect, check the model, stream clips with recovery), ``reference`` (float and
int8 on the host), ``harness`` (the run), ``report`` (JSON, JUnit XML, Markdown), ``plots``,
``flash`` (upload a bundle's model) and ``bench`` (speed sections of ``tinysep bench``); the
host's tools over the wire protocol: ``client`` (requests to a board), ``faults`` (a
fault-injecting relay), ``conformance`` (request/reply vectors for any board and their
replayer), ``overhead`` and ``examples`` (the numbers and worked frames of docs/protocol.md);
the emulated boards: ``emulator`` (the agent on a pseudo-terminal pair) and ``emulated_arm``
(the agent in an ARM root under qemu). Runs on the host only; ``client``, ``faults``,
``conformance``, ``overhead``, ``examples`` and ``emulator`` import only the board side, so
they also run beside an agent in a board's Python.
"""
