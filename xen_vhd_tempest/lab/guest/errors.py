"""Errors of the guest image builder."""


class GuestBuildError(Exception):
    """The guest image cannot be built; the message is one line meant for the user."""
