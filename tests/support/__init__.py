"""Helpers shared by the tests; every test imports them as ``tests.support.<module>``.

- ``processes``: environments for child processes, msrun, free ports, and finding or waiting
  for processes through ``/proc``
- ``launches``: ``wrn-launch`` with fake workers as a subprocess (``Run``, ``SSHRun``) and the
  command lines that run the fake worker and scheduler
- ``sshd``: a real OpenSSH server on 127.0.0.1 and 127.0.0.2 (the ``sshd`` fixture in
  ``tests/conftest.py`` starts it)
- ``fake_worker`` and ``dp_equivalence_worker``: programs the tests start, not imported

Test data (hccn.conf files, rank tables, recorded event streams) lives in ``FIXTURES``.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
EVENTS = FIXTURES / "events"
