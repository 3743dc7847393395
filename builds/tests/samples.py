"""Log samples shared by the builds tests."""

from __future__ import annotations

# A short pytest run with one failing test, as CI prints it.
PYTEST_LOG = """\
============================= test session starts ==============================
collected 2 items

tests/test_app.py .F                                                     [100%]

=================================== FAILURES ===================================
_________________________________ test_total __________________________________

    def test_total():
>       assert total([1, 2]) == 4
E       assert 3 == 4

tests/test_app.py:7: AssertionError
=========================== short test summary info ============================
FAILED tests/test_app.py::test_total - assert 3 == 4
========================= 1 failed, 1 passed in 0.05s ==========================
"""
FAILED_LINE = "FAILED tests/test_app.py::test_total - assert 3 == 4"
