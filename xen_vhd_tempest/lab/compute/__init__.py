"""The lab's compute service: models.py holds state and behaviour, responses.py speaks HTTP."""
