"""The lab's own admin API (``/lab``): runtime settings and status, admin tokens only.

``urls.py`` (routes) -> ``responses.py`` (HTTP in and out); the settings themselves are
``lab.config.Settings``, the status is ``Lab.status()``.
"""
