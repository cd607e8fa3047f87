"""Checks kiln ships and runs on every image it bakes (see kiln.acceptance).

``base/`` is the base battery: testinfra files every base and every role image must pass.
``plugin`` is the pytest plugin kiln loads for acceptance runs (the ``kiln_vars`` fixture).
"""
