"""The single-writer generator: owns all simulation state and publishes ticks over ZeroMQ.

Pure, seeded domain code (``models``, ``engine``) does no I/O; ``server`` is the process edge
(sockets, signals, metrics).
"""
