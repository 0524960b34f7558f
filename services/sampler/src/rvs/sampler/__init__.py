"""The sampler: watches sources, decodes media at a fixed rate and publishes frames to the bus."""
