"""Alerts: every newly embedded face evaluated against the watch list (watchlist), one alert per
person's track (debounce), raised by the embedder that embedded the face (engine)."""
