"""The lab's volume service: models.py holds state and behaviour, responses.py speaks HTTP."""
