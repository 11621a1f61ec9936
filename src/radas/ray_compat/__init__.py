"""The Ray boundary: the only place radas reads or patches Ray's private code. Each module
names the Ray code it relies on; ``docs/architecture.md`` explains why each exists.
Importing this package imports nothing from Ray (``versions`` stays light)."""
