"""The lab admin API's routes: path (under ``/lab``) -> ``AdminResponses`` method."""

from ..httpd import Route

ROUTES = (
    Route("GET", "/settings", "get_settings"),
    Route("PUT", "/settings", "put_settings"),
    Route("GET", "/status", "status"),
)
