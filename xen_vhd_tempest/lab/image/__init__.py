"""The lab's glance: ``urls.py`` routes -> ``responses.py`` (HTTP: images, data, schemas) ->
``models.py`` (image records, data files, status transitions)."""
