"""The detection service (``audios serve``): FastAPI app, web page and the limits that protect them."""

from audios.serve.app import ServeConfig, ServiceError, create_app

__all__ = ["ServeConfig", "ServiceError", "create_app"]
