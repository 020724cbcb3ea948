"""Which router answers a request: the one its `model` names.

The gateway's own name (`ServerSettings.model_name`, "demur") is the configured ladder; each of
the router's models is the same ladder started at that model (`router.replace(start=...)`),
built once when the app is made. `GET /v1/models` lists exactly these names; any other is a
404 in OpenAI's shape.
"""

from __future__ import annotations

from demur.errors import did_you_mean
from demur.router.router import Router
from demur.server.errors import ApiError


class Ladders:
    """The routers a request may name, by name; the gateway's name first."""

    def __init__(self, router: Router, name: str) -> None:
        self.default = name
        self._routers: dict[str, Router] = {name: router}
        for model in router.models:
            if model not in self._routers:  # the gateway's name wins over a model's
                start = router if model == router.start else router.replace(start=model)
                self._routers[model] = start

    @property
    def names(self) -> list[str]:
        return list(self._routers)

    def get(self, name: str) -> Router:
        """The router for `name`; a 404 `model_not_found` naming what is served otherwise."""
        router = self._routers.get(name)
        if router is None:
            raise ApiError(
                404,
                f"the model '{name}' does not exist here.{did_you_mean(name, self._routers)} "
                f"This gateway serves: {', '.join(self._routers)} (GET /v1/models lists them; "
                f"'{self.default}' is the configured ladder, a model's name starts it there)",
                code="model_not_found",
                param="model",
            )
        return router


__all__ = ["Ladders"]
