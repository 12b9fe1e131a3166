"""The test suite, a package so that every test imports its helpers the same way:
``from tests.support.<module> import ...`` (see ``tests/support/__init__.py``)."""
