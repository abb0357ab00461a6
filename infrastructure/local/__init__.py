"""Local services for development and tests: the configured ones, stand-ins for the rest."""

from infrastructure.local.probes import LocalServiceError, Refused
from infrastructure.local.services import LocalServices, Mode, ServiceStatus

__all__ = ["LocalServiceError", "LocalServices", "Mode", "Refused", "ServiceStatus"]
