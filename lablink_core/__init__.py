"""LabLink's core library: configuration, schema, allocation, notifications, fleets.

It knows nothing of Panel or Tornado: the dashboard, the HTTP handlers, the notebooks and the
CLI are all its clients. Importing it has no side effects.
"""

__version__ = "0.1.0"
