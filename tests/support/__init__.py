"""Helpers of radas's tests (not tests themselves): beds, fakes, fault tools, trainables.

Test modules import them as ``support.<module>``: pytest puts ``tests/`` on ``sys.path``
(``pythonpath`` in pyproject.toml), and Ray's in-process workers get the driver's path.
"""
