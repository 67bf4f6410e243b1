"""The conformance run (``mtgate conformance``): :mod:`mtgate.conformance.runner`."""
