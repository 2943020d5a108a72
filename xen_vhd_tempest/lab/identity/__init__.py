"""The lab's identity service: models.py holds state and behaviour, responses.py speaks HTTP."""
