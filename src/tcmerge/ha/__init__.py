"""The HA room model: states, the Server Recovery Manager, the room service, scenarios.

``states`` and ``srm`` are pure (no database); ``rooms`` is the only part that
touches SQL; ``scenario`` and ``simulate`` run timed scenarios on both.
"""
