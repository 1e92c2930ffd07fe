"""Helpers the tests share (data writers, CLI runners, script loaders, failure-injecting callbacks);
fixtures stay in ``tests/conftest.py``."""
