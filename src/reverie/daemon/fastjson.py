"""Request bodies parsed by pydantic-core's JSON parser instead of the standard library's.

FastAPI reads a JSON body with `json.loads` before validating it. For the vectors agents
write, that parse is most of the request: 1,000 memories of 384 floats (8 MB of JSON) take
about 245 ms through `json.loads` and 37 ms through `pydantic_core.from_json`, and the
validation after it about 25 ms. The result is the same Python objects (NaN and Infinity
included). A body pydantic-core refuses goes to `json.loads` as before: it reads what
pydantic-core does not (a lone surrogate, which reverie's own checks then name), and its
error for what is not JSON is the 4xx FastAPI always gave.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute


class FastJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body, allow_inf_nan=True)
            except ValueError:  # the standard library's reading, and its error, stand
                self._json = json.loads(body)
        return self._json


class FastJSONRoute(APIRoute):
    """A route whose JSON body goes through FastJSONRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed_fast(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return parsed_fast
