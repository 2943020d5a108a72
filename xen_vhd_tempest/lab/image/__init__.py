"""The lab's image service: models.py holds state and behaviour, responses.py speaks HTTP."""
