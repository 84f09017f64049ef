"""The version of the Python distribution libnq (``nq.__version__``)."""

__version__ = "1.4.0"
