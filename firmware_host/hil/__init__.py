"""Host side of hardware-in-the-loop testing: board sessions, references, the HIL run, reports.

``session`` (connect, check the model, stream clips with recovery), ``reference`` (float and
int8 on the host), ``harness`` (the run), ``report`` (JSON, JUnit XML, Markdown), ``plots``,
``flash`` (upload a bundle's model) and ``bench`` (speed sections of ``tinysep bench``).
Runs on the host only: it imports tinysep for data, models and metrics.
"""
