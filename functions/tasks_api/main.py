"""tasks-api: the REST API (DESIGN §4). Thin edge: all logic lives in the taskflow library."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap
from taskflow.api.app import handle
from taskflow.observability import configure_logging, served

configure_logging()


@functions_framework.http
@served("tasks-api")
def tasks_api(request: Request) -> Response:
    return handle(request, bootstrap.root())
