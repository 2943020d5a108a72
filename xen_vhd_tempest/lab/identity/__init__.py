"""The lab's keystone: ``urls.py`` routes -> ``responses.py`` (HTTP: tokens, catalog, users,
projects) -> ``models.py`` (users, projects, signed expiring tokens)."""
