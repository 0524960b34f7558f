"""The watch list and its alerts: the use cases (watches), the alerts as they are folded (feed), and
their delivery to a webhook."""
