"""The lab's cinder: ``urls.py`` routes -> ``responses.py`` (HTTP: volumes, actions, types,
messages) -> ``models.py`` (volumes as sparse raw files, status transitions, user messages);
volume-from-image conversion is the lab's ``convert`` callable (``Lab._convert``)."""
